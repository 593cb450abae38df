"""Dataset content checks, each dataset version once: recorded when clean and not read again,
read again when the annotation file or an image folder changes, named again while broken,
checked by one of two processes that start together, and checked on the parse the dataset
does anyway (no second parse of a COCO file)."""
import json
import multiprocessing
import os
import os.path as osp
import time

import pytest
from mmengine.config import Config
from mmengine.registry import DATASETS, DefaultScope

from partialnet_mm.tooling.demo_data import make_ade20k_demo, make_coco_demo
from partialnet_mm.runner import DataError
from partialnet_mm.runner import data_checks
from partialnet_mm.runner.data_checks import CheckedDatasets, ContentChecks, check_annotations

LOADERS = ['train_dataloader']


@pytest.fixture()
def coco(tmp_path):
    root = str(tmp_path / 'coco_demo') + '/'
    make_coco_demo(root, num_train=3, num_val=1)
    return root


@pytest.fixture()
def record(tmp_path):
    return CheckedDatasets(str(tmp_path / 'cache'))


def coco_cfg(root):
    """mmdet's CocoDataset over the demo set, as the demo configs read it."""
    return Config(dict(train_dataloader=dict(dataset=dict(
        type='CocoDataset', data_root=root, ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'), metainfo=dict(
            classes=('circle', 'triangle', 'rectangle', 'star')),
        filter_cfg=dict(filter_empty_gt=True), pipeline=[]))))


def annotation_file(root):
    return osp.join(root, 'annotations', 'instances_train2017.json')


def not_read(monkeypatch):
    """Make reading an annotation file or an image fail the test."""
    def fail(*args, **kwargs):
        raise AssertionError(f'read again: {args}')
    monkeypatch.setattr(data_checks, 'load_json', fail)
    monkeypatch.setattr(data_checks, 'file_problems', fail)


def edit_annotations(root, edit):
    path = annotation_file(root)
    with open(path) as f:
        data = json.load(f)
    edit(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def test_a_clean_dataset_is_recorded_and_not_read_again(coco, record, monkeypatch):
    cfg = coco_cfg(coco)
    assert check_annotations(cfg, LOADERS, checked=record) == [annotation_file(coco)]
    not_read(monkeypatch)
    assert check_annotations(cfg, LOADERS, checked=record) == []
    assert ContentChecks(cfg, LOADERS, checked=record).pending == []


def test_the_dataset_parse_is_checked_instead_of_a_second_one(coco, record, monkeypatch):
    """Inside on_dataset_parse, mmdet's CocoDataset parses the file and the check reads that
    parse: the file is parsed once, and the dataset is recorded as checked."""
    cfg = coco_cfg(coco)
    monkeypatch.setattr(data_checks, 'load_json', lambda path: pytest.fail('second parse'))
    checks = ContentChecks(cfg, LOADERS, checked=record)
    with checks.on_dataset_parse():
        with DefaultScope.overwrite_default_scope('mmdet'):
            dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 3 and checks.read == [annotation_file(coco)]
    assert ContentChecks(cfg, LOADERS, checked=record).pending == []


def test_problems_found_on_the_dataset_parse_raise_once_the_datasets_are_built(coco, record):
    edit_annotations(coco, lambda d: d['annotations'][0].update(category_id=99))
    cfg = coco_cfg(coco)
    checks = ContentChecks(cfg, LOADERS, 'my_config.py', checked=record)
    built = []
    with pytest.raises(DataError) as stop:
        with checks.on_dataset_parse():
            with DefaultScope.overwrite_default_scope('mmdet'):
                built.append(DATASETS.build(cfg.train_dataloader.dataset))
    assert built, 'the dataset is built, the problem raised after it'
    message = str(stop.value)
    # not wrapped by mmengine's builder ("class `CocoDataset` in ...: ")
    assert message.startswith('Broken data for my_config.py:\ntrain_dataloader: ')
    assert 'category_id 99 is not one of the file\'s categories [1, 2, 3, 4]' in message
    assert ContentChecks(cfg, LOADERS, checked=record).pending  # not recorded


def test_a_changed_annotation_file_is_checked_again(coco, record):
    cfg = coco_cfg(coco)
    check_annotations(cfg, LOADERS, checked=record)
    edit_annotations(coco, lambda d: d['annotations'][0].update(bbox=[200., 10., 120., 30.]))
    with pytest.raises(DataError) as stop:
        check_annotations(cfg, LOADERS, checked=record)
    assert 'bbox [200.0, 10.0, 120.0, 30.0] (x, y, w, h) is not inside' in str(stop.value)


def test_an_image_removed_after_the_check_is_named(coco, record):
    cfg = coco_cfg(coco)
    check_annotations(cfg, LOADERS, checked=record)
    os.remove(osp.join(coco, 'train2017', '000001.jpg'))
    with pytest.raises(DataError) as stop:
        check_annotations(cfg, LOADERS, checked=record)
    assert 'train2017/000001.jpg is missing' in str(stop.value)


def test_broken_data_is_named_again_on_the_next_run(coco, record):
    image = osp.join(coco, 'train2017', '000002.jpg')
    with open(image, 'rb') as f:
        data = f.read()
    with open(image, 'wb') as f:
        f.write(data[:len(data) // 2])
    for _ in range(2):
        with pytest.raises(DataError) as stop:
            check_annotations(coco_cfg(coco), LOADERS, checked=record)
        assert 'train2017/000002.jpg is truncated' in str(stop.value)


def test_a_corrupt_record_is_checked_anew_and_rewritten(coco, record):
    os.makedirs(osp.dirname(record.path))
    with open(record.path, 'w') as f:
        f.write('{"abc": [1, 2')  # cut short
    cfg = coco_cfg(coco)
    assert check_annotations(cfg, LOADERS, checked=record) == [annotation_file(coco)]
    with open(record.path) as f:
        assert [entry['dataset'] for entry in json.load(f).values()] == [annotation_file(coco)]
    assert check_annotations(cfg, LOADERS, checked=record) == []


def test_without_a_writable_cache_every_run_checks(coco, tmp_path):
    blocked = tmp_path / 'not_a_folder'
    blocked.write_text('')
    record = CheckedDatasets(str(blocked / 'cache'))
    cfg = coco_cfg(coco)
    for _ in range(2):
        assert check_annotations(cfg, LOADERS, checked=record) == [annotation_file(coco)]


def _check_after_barrier(cfg, folder, barrier, results):
    checks = ContentChecks(cfg, LOADERS, checked=CheckedDatasets(folder))
    barrier.wait()
    checks.check_all()
    results.put(len(checks.read))


def test_of_two_processes_starting_together_one_checks(coco, tmp_path, monkeypatch):
    """Both find the dataset unrecorded at the start; the lock makes one check it while the
    other waits, then finds it recorded (the ranks of a distributed run)."""
    real = data_checks.file_problems

    def slow_file_problems(paths):
        time.sleep(0.5)  # a check long enough for the other process to reach the lock
        return real(paths)

    monkeypatch.setattr(data_checks, 'file_problems', slow_file_problems)
    context = multiprocessing.get_context('fork')
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_check_after_barrier,
                                 args=(coco_cfg(coco), str(tmp_path / 'cache'), barrier,
                                       results)) for _ in range(2)]
    for p in processes:
        p.start()
    for p in processes:
        p.join(60)
    assert [p.exitcode for p in processes] == [0, 0]
    assert sorted(results.get(timeout=5) for _ in processes) == [0, 1]


def test_a_segmentation_set_is_recorded_and_checked_again_after_a_change(tmp_path, record,
                                                                          monkeypatch):
    root = str(tmp_path / 'ade')
    make_ade20k_demo(root, num_train=2, num_val=1, image_size=(32, 48))
    cfg = Config(dict(train_dataloader=dict(dataset=dict(
        type='ADE20KDataset', data_root=root,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training')))))
    checks = ContentChecks(cfg, LOADERS, checked=record)
    checks.check_folders()
    assert checks.read == [root]
    with monkeypatch.context() as patched:
        not_read(patched)
        assert ContentChecks(cfg, LOADERS, checked=record).pending == []
    label = osp.join(root, 'annotations', 'training', 'ADE_demo_training_000001.png')
    os.remove(label)
    with pytest.raises(DataError) as stop:
        ContentChecks(cfg, LOADERS, checked=record).check_folders()
    assert f'{label} is missing' in str(stop.value)


def test_what_a_file_check_finds(tmp_path):
    import cv2
    import numpy as np
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)
    jpg, png = str(tmp_path / 'a.jpg'), str(tmp_path / 'b.PNG')
    cv2.imwrite(jpg, image)
    cv2.imwrite(str(tmp_path / 'b.png'), image)
    os.rename(str(tmp_path / 'b.png'), png)
    assert data_checks.file_problem(jpg) is None and data_checks.file_problem(png) is None
    for path in (jpg, png):
        data = open(path, 'rb').read()
        cut = str(tmp_path / ('cut' + path[-4:]))
        open(cut, 'wb').write(data[:len(data) - 100])
        assert data_checks.file_problem(cut) == f'{cut} is truncated (incomplete file)'
    tiny = str(tmp_path / 'tiny.jpg')
    open(tiny, 'wb').write(b'\xff\xd8\xff\xd9')  # shorter than the bytes read at the end
    assert data_checks.file_problem(tiny) is None
    (tmp_path / 'folder.jpg').mkdir()
    assert 'folder.jpg is missing' in data_checks.file_problem(str(tmp_path / 'folder.jpg'))
    assert data_checks.file_problem(str(tmp_path / 'no.jpg')) == f'{tmp_path / "no.jpg"} is missing'
    other = tmp_path / 'c.bmp'
    other.write_bytes(b'BM')
    assert data_checks.file_problem(str(other)) is None
    # several chunks (read by several threads): the first problems, in the order given
    paths = [jpg] * (3 * data_checks.CHUNK) + [str(tmp_path / f'{i}.jpg') for i in range(7)]
    assert data_checks.file_problems(paths) == [
        f'{tmp_path / f"{i}.jpg"} is missing' for i in range(data_checks.MAX_NAMED)]

"""The start-up benchmark (partialnet_mm.tooling.startup): the COCO-scale set it generates,
the commands it runs, its table, and (slow) a whole round on a small set."""
import json
import os
import os.path as osp
import subprocess
import sys
import time

import pytest
from conftest import ROOT

from partialnet_mm.tooling import startup
from partialnet_mm.tooling.startup import (FORMS, MMDET, OURS_COLD, OURS_WARM,
                                            make_coco_scale_set, measure_startup,
                                            startup_command, startup_rows)
from partialnet_mm.runner import load_config


def test_the_coco_scale_set_has_coco_layout_counts_and_categories(tmp_path):
    root = str(tmp_path / 'coco')
    make_coco_scale_set(root, train=dict(images=30, instances=200),
                        val=dict(images=4, instances=10))
    with open(osp.join(root, 'annotations', 'instances_train2017.json')) as f:
        train = json.load(f)
    assert len(train['images']) == 30 and len(train['annotations']) == 200
    assert [c['id'] for c in train['categories']][-3:] == [88, 89, 90]
    assert len(train['categories']) == 80
    assert all(len(a['segmentation'][0]) >= 24 for a in train['annotations'])
    images = {osp.join(root, 'train2017', i['file_name']) for i in train['images']}
    assert len({os.stat(p).st_ino for p in images}) == startup.SOURCE_IMAGES  # hard links
    marker = os.stat(osp.join(root, 'DONE.json')).st_mtime_ns
    make_coco_scale_set(root, train=dict(images=30, instances=200),
                        val=dict(images=4, instances=10))  # complete: left as it is
    assert os.stat(osp.join(root, 'DONE.json')).st_mtime_ns == marker


def test_the_runs_differ_only_in_the_tool(tmp_path):
    config = startup.DEFAULT_CONFIG
    ours, mmdet = (startup_command(form, 1, config, '/data/coco', 'w') for form in
                   (OURS_COLD, MMDET))
    assert ours[1] == osp.join(ROOT, 'tools', 'train.py') and ours[2:] == mmdet[2:]
    assert mmdet[1].endswith(osp.join('mmdet', '.mim', 'tools', 'train.py'))
    options = ours[ours.index('--cfg-options') + 1:]
    cfg = load_config(config, options)
    assert cfg.train_cfg == dict(type='IterBasedTrainLoop', max_iters=1, val_begin=2)
    assert cfg.train_dataloader.dataset.data_root == '/data/coco/'
    assert cfg.train_dataloader.dataset.pipeline[2].scale == startup.FIRST_ITERATION_SCALE
    # two ranks: mmdet's train.py joins the gloo group through gloo_launch.py and gets the
    # CPU DDP wrapper that our tools/train.py sets itself
    ours2, mmdet2 = (startup_command(form, 2, config, '/data/coco', 'w') for form in
                     (OURS_WARM, MMDET))
    assert ours2[-2:] == mmdet2[-2:] == ['--launcher', 'pytorch']
    assert mmdet2[mmdet2.index('--nproc_per_node=2') + 1] == startup.GLOO_LAUNCH
    assert set(mmdet2) - set(ours2) - {startup.GLOO_LAUNCH, mmdet[1]} == set(
        startup.CPU_DDP_OPTIONS)


def test_rows_are_medians_with_ratios_to_mmdets_own():
    def run(t, rss):
        return dict(to_loop_s=t, to_loop_cpu_s=t / 2, to_first_iter_s=t + 1,
                    to_first_iter_cpu_s=t / 2 + 1, wall_s=t + 2, cpu_s=t, peak_rss_mib=rss,
                    load=2.)
    runs = {(MMDET, 1): [run(10, 100), run(12, 100), run(30, 100)],
            (OURS_COLD, 1): [run(11, 105), run(10.5, 100), run(40, 100)]}
    rows = startup_rows(runs)
    assert [r['form'] for r in rows] == [OURS_COLD, MMDET]
    assert rows[0]['to_loop_s'] == 11 and rows[0]['to_loop_s_ratio'] == pytest.approx(11 / 12)
    assert rows[0]['peak_rss_mib_ratio'] == 1 and 'load_ratio' not in rows[0]
    table = startup.format_startup_table(rows, '# t')
    assert table.count('\n') == 4 and '11.00 (0.917)' in table


def test_the_cpu_time_of_a_process_tree_counts_the_children():
    child = subprocess.Popen([sys.executable, '-c', 'import time\nt = time.process_time()\n'
                              'while time.process_time() - t < 0.5: pass\nprint(1, flush=True)'
                              '\ninput()'], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    child.stdout.readline()  # it has spun for 0.5 s of CPU and waits
    with_child = startup.tree_cpu_seconds(os.getpid())
    child.communicate(b'\n')
    assert with_child >= time.process_time() + 0.45


@pytest.mark.slow
def test_a_round_of_start_up_runs_on_a_small_set(tmp_path):
    """Every form in one process and in two ranks (torchrun, gloo) trains its one iteration;
    ours with an empty record checks and records the datasets, ours with the record reads
    nothing again (measure_startup checks both)."""
    root = make_coco_scale_set(str(tmp_path / 'coco'), train=dict(images=8, instances=30),
                               val=dict(images=2, instances=4))
    rows = measure_startup(root, rounds=1, ranks=(1, 2), work_root=str(tmp_path / 'runs'),
                           log=lambda line: None)
    assert [(r['form'], r['ranks']) for r in rows] == [(f, n) for n in (1, 2) for f in FORMS]
    for row in rows:
        assert 0 < row['to_loop_s'] < row['to_first_iter_s'] <= row['wall_s']
        assert row['peak_rss_mib'] > 200 and row['cpu_s'] > 0

"""INT8 export (tools/deploy.py --quantize int8): onnxruntime's static QDQ quantization of a
checked fp32 export, checked against PyTorch and the dataset metric.

The fast tests quantize a small classifier with random weights (the ImageNet-layout demo
config on a few generated images) and check that the tool accepts it, rejects a corrupted
one and one beyond a tolerance, keeping both as ``.rejected`` with their figures. The slow
test quantizes the trained RetinaNet demo of tests/test_mmdeploy.py (its session fixtures)
and checks its mAP against PyTorch fp32 within :class:`Int8Tolerances`.
"""
import glob
import json
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from conftest import ROOT, data_root_options, load_tool
from test_mmdeploy import (DEPLOY_CONFIGS, coco_demo, mmdeploy_or_skip,  # noqa: F401
                           trained_retinanet, val_images)

from partialnet_mm.deploy.mmdeploy_export import ExportCheckError
from partialnet_mm.deploy.quantize import (COMPUTE_OPS, INT8_FILE, REPORT_FILE, WEIGHT_BITS,
                                           Int8Tolerances, QuantizationPolicy,
                                           calibration_reader, check_quantized, cpu_has_vnni,
                                           graph_input_name, graph_layers)

CLASSIFIER = osp.join(ROOT, 'configs', 'demo', 'partialnet_t0_imagenet_demo.py')
CLASSIFICATION_DEPLOY = osp.join(DEPLOY_CONFIGS, 'mmpretrain',
                                 'classification_onnxruntime_dynamic.py')
TOL = Int8Tolerances()


def deploy_tool(*argv):
    return load_tool('deploy').main([str(a) for a in argv])


@pytest.fixture(scope='module')
def tiny_classifier(tmp_path_factory):
    """The demo classifier (T0, 72 x 72) with random weights, exported and quantized by the
    tool on 4 calibration images of its train split; the report and what made it."""
    mmdeploy_or_skip()
    from partialnet_mm.tooling.demo_data import make_imagenet_demo
    from partialnet_mm.deploy.mmdeploy_export import build_reference_model
    from partialnet_mm.runner.config import load_config
    tmp = tmp_path_factory.mktemp('int8_classifier')
    data_root = str(tmp / 'imagenet_demo')
    make_imagenet_demo(data_root, num_train_per_class=3, num_val_per_class=2)
    options = data_root_options(data_root)
    torch.manual_seed(0)
    model = build_reference_model(load_config(CLASSIFIER, options), None, 'cpu')
    checkpoint = str(tmp / 'random.pth')
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    images = sorted(glob.glob(osp.join(data_root, 'val', '*', '*.jpg')))
    work_dir = tmp / 'work'
    report = deploy_tool(CLASSIFICATION_DEPLOY, CLASSIFIER, checkpoint, images[0], '--test-img',
                         *images, '--work-dir', work_dir, '--quantize', 'int8',
                         '--calib-images', 4, '--timing-rounds', 1, '--threads', 1,
                         '--cfg-options', *options)
    return dict(report=report, work_dir=work_dir, checkpoint=checkpoint, images=images,
                options=options, data_root=data_root)


def classifier_configs(options):
    from mmdeploy.utils import load_config

    from partialnet_mm.runner.config import parse_cfg_options
    deploy_config, model_config = load_config(CLASSIFICATION_DEPLOY, CLASSIFIER)
    model_config.merge_from_dict(parse_cfg_options(options))
    return deploy_config, model_config


def test_int8_model_of_a_small_classifier_is_accepted(tiny_classifier):
    report, work_dir = tiny_classifier['report'], tiny_classifier['work_dir']
    assert report['failures'] == []
    assert report['files'] == [str(work_dir / INT8_FILE)]
    assert osp.isfile(work_dir / 'end2end.onnx') and osp.isfile(work_dir / INT8_FILE)
    assert not glob.glob(str(work_dir / '*.rejected'))
    with open(work_dir / REPORT_FILE) as f:
        assert json.load(f)['files'] == report['files']
    # 4 distinct images of the train split, spread over its 4 class folders
    calibration = report['calibration']['images']
    assert len(set(calibration)) == 4 and all('/train/' in p for p in calibration)
    assert len({osp.basename(osp.dirname(p)) for p in calibration}) == 4
    # every layer computes in 8 bits (the default policy keeps none in float)
    quantization = report['quantization']
    assert quantization['int8_layers'] == quantization['layers']
    assert quantization['layers']['Conv'] > 10
    agreement = report['agreement']
    assert agreement['images'] == 8
    assert agreement['top1_agreement'] >= TOL.min_top1_agreement
    assert agreement['max_score_diff'] <= TOL.max_class_score_diff
    assert set(report['metrics']) == {'pytorch', 'onnxruntime_fp32', 'onnxruntime_int8'}
    assert report['metric_drop']['accuracy/top1'] <= TOL.max_metric_drop
    for variant in report['metrics'].values():
        assert 0 <= variant['accuracy/top1'] <= 100
    latency = report['latency']['seconds']
    assert set(latency) == {'pytorch_folded', 'onnxruntime_fp32', 'onnxruntime_int8'}
    assert all(by_threads[1] > 0 for by_threads in latency.values())


def test_calibration_feeds_what_the_backend_model_feeds_its_graph(tiny_classifier):
    """The calibration reader's tensor for an image is the one mmdeploy's backend model
    hands to onnxruntime when it runs that image."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_input_shape
    deploy_config, model_config = classifier_configs(tiny_classifier['options'])
    fp32_file = str(tiny_classifier['work_dir'] / 'end2end.onnx')
    task_processor = build_task_processor(model_config, deploy_config, 'cpu')
    model = task_processor.build_backend_model([fp32_file],
                                               task_processor.update_data_preprocessor)
    fed = []
    run_graph = model.wrapper.forward
    model.wrapper.forward = lambda inputs: fed.append(inputs) or run_graph(inputs)
    image = tiny_classifier['images'][3]
    input_shape = get_input_shape(deploy_config)
    model.test_step(task_processor.create_input(image, input_shape)[0])
    name = graph_input_name(fp32_file)
    reader = calibration_reader(task_processor, model.data_preprocessor, [image], input_shape,
                                name)
    calibration = reader.get_next()
    assert reader.get_next() is None and len(fed) == 1 and list(fed[0]) == [name]
    assert np.array_equal(calibration[name], fed[0][name].numpy())


def corrupted_copy(int8_file: str, target: str, factor: float) -> None:
    """``int8_file`` with the weight scales of its last 8-bit layer times ``factor``."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(int8_file)
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    last = [n for n in graph.node if n.op_type in COMPUTE_OPS and n.input[1] in producer
            and producer[n.input[1]].op_type == 'DequantizeLinear'][-1]
    scale = weights[producer[last.input[1]].input[1]]
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * factor, scale.name))
    onnx.save(model, target)


def recheck(tiny_classifier, tmp_path, int8_source, tolerances=None):
    """check_quantized on a copy of ``int8_source`` (corrupted or not) in a fresh work dir;
    returns (the error, the work dir)."""
    deploy_config, model_config = classifier_configs(tiny_classifier['options'])
    unverified, work_dir = tmp_path / 'unverified', tmp_path / 'work'
    unverified.mkdir()
    work_dir.mkdir()
    int8_source(str(unverified / INT8_FILE))
    with pytest.raises(ExportCheckError) as error:
        check_quantized(deploy_config, model_config, tiny_classifier['checkpoint'],
                        str(tiny_classifier['work_dir'] / 'end2end.onnx'), str(unverified),
                        str(work_dir), tiny_classifier['images'], tolerances, timing_rounds=1,
                        threads=[1])
    assert not unverified.exists()
    assert sorted(p.name for p in work_dir.iterdir()) == [INT8_FILE + '.rejected', REPORT_FILE]
    with open(work_dir / REPORT_FILE) as f:
        report = json.load(f)
    assert report['failures'] and 'latency' not in report
    assert report['files'] == [str(work_dir / (INT8_FILE + '.rejected'))]
    return str(error.value), report


def test_int8_model_with_a_corrupted_scale_is_rejected_with_its_figures(tiny_classifier,
                                                                          tmp_path):
    """The classifier's last layer with its weight scales negated: the classes it ranked
    first come last. (A scale made larger is no test: every layer's output is quantized to
    its calibrated range, which bounds what a wrong scale can change.)"""
    accepted = str(tiny_classifier['work_dir'] / INT8_FILE)
    message, report = recheck(tiny_classifier, tmp_path,
                              lambda target: corrupted_copy(accepted, target, -1.0))
    assert 'top1_agreement' in message and 'kept as' in message
    assert report['agreement']['top1_agreement'] < TOL.min_top1_agreement
    assert any(f.startswith('top1_agreement') for f in report['failures'])
    assert set(report['metrics']) == {'pytorch', 'onnxruntime_fp32', 'onnxruntime_int8'}


def test_int8_model_beyond_a_tolerance_is_rejected(tiny_classifier, tmp_path):
    """The accepted model again, now against a metric tolerance no model meets (its drop
    must be below -1, a gain of 100 points): rejected on the metric alone."""
    accepted = str(tiny_classifier['work_dir'] / INT8_FILE)
    message, report = recheck(tiny_classifier, tmp_path,
                              lambda target: shutil.copy(accepted, target),
                              Int8Tolerances(max_metric_drop=-1.0))
    assert report['failures'] == [f'accuracy/top1 drops by '
                                  f'{report["metric_drop"]["accuracy/top1"]:.4f} (needs <= -1.0)']
    assert 'accuracy/top1 drops by' in message
    assert report['agreement']['top1_agreement'] >= TOL.min_top1_agreement


def test_first_and_last_layers_of_a_graph(tmp_path):
    """First: the layers the image reaches through no other layer. Last: those whose output
    no other layer reads as features; a box branch that only places RoIs is last."""
    import onnx
    from torchvision.ops import roi_align

    class TwoStage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.body = torch.nn.Conv2d(8, 8, 3, padding=1)
            self.box = torch.nn.Conv2d(8, 4, 1)
            self.mask = torch.nn.Conv2d(8, 1, 1)

        def forward(self, x):
            features = self.body(torch.relu(self.stem(x)))
            boxes = self.box(features).mean((2, 3)).abs().cumsum(1)  # x1 <= y1 <= x2 <= y2
            rois = torch.cat([torch.zeros(1, 1), boxes], 1)
            return boxes, self.mask(roi_align(features, rois, (4, 4)))

    path = str(tmp_path / 'two_stage.onnx')
    torch.onnx.export(TwoStage().eval(), (torch.randn(1, 3, 16, 16), ), path,
                      input_names=['input'], opset_version=17, dynamo=False)
    graph = onnx.load(path).graph
    names = {n.name: n for n in graph.node if n.op_type in COMPUTE_OPS}
    layers = graph_layers(graph, COMPUTE_OPS)
    module = {name: name.split('/')[1] for name in names}
    assert [module[n] for n in layers['first']] == ['stem']
    assert sorted(module[n] for n in layers['last']) == ['box', 'mask']


def test_weights_use_7_bits_only_where_the_cpu_lacks_vnni(monkeypatch):
    """onnxruntime's advice: 7-bit weights on x86 CPUs without VNNI; 8 bits where it is."""
    assert QuantizationPolicy().reduce_range is (not cpu_has_vnni())
    import partialnet_mm.deploy.quantize as quantize
    for has_vnni in (True, False):
        monkeypatch.setattr(quantize, 'cpu_has_vnni', lambda: has_vnni)
        assert QuantizationPolicy().reduce_range is (not has_vnni)
        assert QuantizationPolicy(reduce_range=has_vnni).reduce_range is has_vnni


def test_weight_bits_option_sets_the_policy():
    tool = load_tool('deploy')
    for bits, reduce_range in (('7', True), ('8', False), ('auto', not cpu_has_vnni())):
        args = tool.parse_args(['d.py', 'm.py', 'c.pth', 'i.jpg', '--quantize', 'int8',
                                '--int8-weight-bits', bits])
        assert QuantizationPolicy(
            reduce_range=WEIGHT_BITS[args.int8_weight_bits]).reduce_range is reduce_range


def test_quantize_options_belong_to_quantize():
    with pytest.raises(SystemExit):
        load_tool('deploy').parse_args(['d.py', 'm.py', 'c.pth', 'i.jpg', '--threads', '1', '2'])


# ------------------------------------------------------------------------ slow: trained demo
@pytest.mark.slow
@pytest.mark.trained_exports
def test_int8_retinanet_keeps_its_map(trained_retinanet, coco_demo, tmp_path):  # noqa: F811
    """The trained RetinaNet demo quantized on its 16 train images: its detections on the
    val images match PyTorch's, and its bbox mAP on them is within
    ``Int8Tolerances.max_metric_drop`` of PyTorch fp32's."""
    config, checkpoint = trained_retinanet
    images = val_images(coco_demo + 'val2017')
    options = data_root_options(coco_demo, f'{coco_demo}annotations/instances_val2017.json')
    report = deploy_tool(osp.join(DEPLOY_CONFIGS, 'mmdet', 'detection',
                                  'detection_onnxruntime_dynamic.py'), config, checkpoint,
                         images[0], '--test-img', *images, '--work-dir', tmp_path,
                         '--quantize', 'int8', '--calib-images', 16, '--timing-rounds', 1,
                         '--cfg-options', *options)
    assert report['failures'] == [] and osp.isfile(tmp_path / INT8_FILE)
    assert len(report['calibration']['images']) == 16
    agreement = report['agreement']
    assert agreement['compared_detections'] >= 4, agreement  # trained: confident detections
    assert agreement['matched'] >= TOL.min_matched, agreement
    assert agreement['mean_box_iou'] >= TOL.min_mean_box_iou, agreement
    assert agreement['label_agreement'] >= TOL.min_label_agreement, agreement
    pytorch, int8 = (report['metrics'][k]['coco/bbox_mAP'] for k in ('pytorch',
                                                                      'onnxruntime_int8'))
    assert pytorch > 0.1, report['metrics']  # trained on these images: a metric to lose
    assert pytorch - int8 <= TOL.max_metric_drop, report['metrics']

"""Regenerate the model index: configs/metafile.yml (every config with its parameters and
FLOPs, in OpenMMLab's metafile format) and model-index.yml at the repository root.

    python tools/make_model_index.py            # about 10 minutes on 2 CPU cores
    python tools/make_model_index.py --reuse-listed   # measure only configs not listed yet

Run it after adding, removing or changing a config; tests/test_model_index.py checks that
every config is listed.
"""
import argparse
import os.path as osp

from partialnet_mm.tooling.model_index import METAFILE, MODEL_INDEX, write_model_index


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--root', default=osp.dirname(osp.dirname(osp.abspath(__file__))),
                        help='repository root (default: the one holding this tool)')
    parser.add_argument('--reuse-listed', action='store_true',
                        help='keep the entries of configs already listed (only right when '
                        'those configs did not change) and measure the others')
    args = parser.parse_args(argv)
    metafile = write_model_index(args.root, progress=lambda c: print(f'measuring {c}',
                                                                     flush=True),
                                 reuse_listed=args.reuse_listed)
    print(f'{len(metafile["Models"])} configs written to {osp.join(args.root, METAFILE)} '
          f'(imported by {MODEL_INDEX})')
    return metafile


if __name__ == '__main__':
    main()

"""Write the embedded demo datasets (COCO, ADE20K and ImageNet layouts) under data/.

    python tools/make_demo_data.py            # every set at its default place
    python tools/make_demo_data.py coco       # one set
    python tools/make_demo_data.py --force    # regenerate even if complete

A set that is already complete is skipped; an incomplete or stale one is regenerated.
"""
import argparse

from partialnet_mm.tooling import demo_data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('sets', nargs='*', choices=sorted(demo_data.DEMO_ROOTS) + [[]],
                        help='which sets (default: all)')
    parser.add_argument('--force', action='store_true', help='regenerate complete sets too')
    args = parser.parse_args(argv)
    for name in args.sets or sorted(demo_data.DEMO_ROOTS):
        made = demo_data.MAKERS[name](force=args.force)
        root = demo_data.DEMO_ROOTS[name]
        print(f'{name}: {"written to" if made else "already complete at"} {root}')


if __name__ == '__main__':
    main()

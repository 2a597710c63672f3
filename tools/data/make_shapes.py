"""Write the synthetic shapes data set (COCO detection + mmpretrain
classification splits) that mmlgc's demo, shapes configs and tests use.

    python tools/data/make_shapes.py                 # data/shapes, defaults
    python tools/data/make_shapes.py --out data/tiny --num-train 16 --num-val 8

Output (deterministic for a given set of options):
    OUT/det/{train,val}/*.png, OUT/det/annotations/instances_{train,val}.json
    OUT/cls/{train,val}/*.png, OUT/cls/meta/{train,val,classes}.txt
"""
import argparse
import dataclasses
import sys
import time

from mmlgc.datasets.shapes import ShapesConfig, make_shapes


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='data/shapes', help='output root')
    for field in dataclasses.fields(ShapesConfig):
        parser.add_argument(
            '--' + field.name.replace('_', '-'),
            type=field.type if isinstance(field.type, type) else
            type(field.default),
            default=field.default,
            help=f'(default: {field.default})')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        cfg = ShapesConfig(**{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(ShapesConfig)
        })
        start = time.perf_counter()
        files = make_shapes(args.out, cfg)
    except ValueError as e:  # impossible parameters: the message, no traceback
        sys.exit(f'make_shapes.py: error: {e}')
    print(f'shapes data written to {args.out} in '
          f'{time.perf_counter() - start:.1f}s:')
    for name, path in files.items():
        print(f'  {name}: {path}')


if __name__ == '__main__':
    main()

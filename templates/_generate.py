#!/usr/bin/env python3
"""Regenerate the data files shipped with the templates, deterministically.

    python templates/_generate.py               # rewrite the files inside templates/
    python templates/_generate.py --out DIR     # write the same tree under DIR instead

Generated files (paths relative to the templates root):

* ``mnist/data/features/{training,validation,test}/*_mini.csv`` -- scikit-learn's bundled 8x8 digits
  (1797 images, pixel values 0..16), shuffled with a fixed seed and split 1200 / 300 / 297. No header,
  the label in column 0, then the 64 pixels row by row, all integers.
* ``mnist/test_payload.jpg`` and ``mnist/test_payload.expected.json`` -- one digit of the *test* split,
  upscaled to 64x64 grayscale (dark ink on a light background), and the answer the served model gives.
* ``property-val/data/features/{training,validation,test}/*.csv`` and ``property-val/test_payload.json`` --
  a synthetic housing data set (18 integer features and an integer ``sale_price``) with a header row.

Running the script twice gives identical files: only numpy's legacy ``RandomState`` (whose streams are
frozen by numpy's compatibility policy) and plain integer formatting are used.
"""
import argparse
import csv
import io
import json
import os

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

TEMPLATES_DIR = os.path.dirname(os.path.abspath(__file__))

MNIST_SEED = 20190729
MNIST_SPLITS = (("training", "training_mini.csv", 1200), ("validation", "validation_mini.csv", 300),
                ("test", "test_mini.csv", None))
# Row of the mnist test split used as the payload: a clear "3" that every model of the hyperopt grid
# classifies correctly, also after the JPEG round trip (checked by tests/templates).
PAYLOAD_TEST_ROW = 1
PAYLOAD_SIZE = 64

PROPERTY_SEED = 20191017
PROPERTY_SPLITS = (("training", "training.csv", 1000), ("validation", "validation.csv", 200),
                   ("test", "test.csv", 200))
PROPERTY_FEATURES = (
    "lot_area", "overall_quality", "overall_condition", "year_built", "year_remodeled", "basement_area",
    "living_area", "full_baths", "half_baths", "bedrooms", "rooms", "fireplaces", "garage_cars",
    "garage_area", "wood_deck_area", "porch_area", "pool_area", "month_sold",
)
PROPERTY_TARGET = "sale_price"


def _write_text(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _csv_text(rows, header=None):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if header:
        writer.writerow(header)
    for row in rows:
        writer.writerow([int(value) for value in row])
    return buffer.getvalue()


def _json_text(obj):
    return json.dumps(obj, indent=2) + "\n"


def mnist_splits():
    """Return {split name: (labels, pixels)} for the digits data, split deterministically."""
    digits = load_digits()
    pixels = np.asarray(digits.data, dtype=np.int64)
    labels = np.asarray(digits.target, dtype=np.int64)
    order = np.random.RandomState(MNIST_SEED).permutation(len(labels))
    splits, start = {}, 0
    for name, _, size in MNIST_SPLITS:
        stop = len(order) if size is None else start + size
        rows = order[start:stop]
        splits[name] = (labels[rows], pixels[rows])
        start = stop
    return splits


def digit_to_image(pixels):
    """8x8 digit (0..16, 0 = background) -> PAYLOAD_SIZE x PAYLOAD_SIZE grayscale image, dark ink on white."""
    grid = np.asarray(pixels, dtype=np.float64).reshape(8, 8)
    gray = np.rint(255.0 - grid * 255.0 / 16.0).astype(np.uint8)
    scale = PAYLOAD_SIZE // 8
    return Image.fromarray(np.kron(gray, np.ones((scale, scale), dtype=np.uint8)), mode="L")


def generate_mnist(root):
    base = os.path.join(root, "mnist")
    splits = mnist_splits()
    for name, filename, _ in MNIST_SPLITS:
        labels, pixels = splits[name]
        rows = np.column_stack([labels, pixels])
        _write_text(os.path.join(base, "data", "features", name, filename), _csv_text(rows))

    labels, pixels = splits["test"]
    buffer = io.BytesIO()
    digit_to_image(pixels[PAYLOAD_TEST_ROW]).save(buffer, format="JPEG", quality=95)
    with open(os.path.join(base, "test_payload.jpg"), "wb") as handle:
        handle.write(buffer.getvalue())
    _write_text(os.path.join(base, "test_payload.expected.json"),
                json.dumps({"result": [int(labels[PAYLOAD_TEST_ROW])]}) + "\n")


def property_rows(count, rng):
    """Synthetic houses: integer features loosely shaped like the Ames (Kaggle) data, and a price."""
    quality = np.clip(np.rint(rng.normal(6.1, 1.4, count)), 1, 10)
    condition = np.clip(np.rint(rng.normal(5.6, 1.1, count)), 1, 9)
    year_built = np.clip(np.rint(2010 - rng.gamma(2.0, 19.0, count)), 1872, 2010)
    remodeled = np.where(rng.rand(count) < 0.45, year_built,
                         np.minimum(2010, year_built + np.rint(rng.uniform(0, 60, count))))
    lot_area = np.clip(np.rint(np.exp(rng.normal(9.1, 0.45, count))), 1300, 60000)
    living_area = np.clip(np.rint(rng.normal(900 + 95 * quality, 320, count)), 450, 4500)
    basement_area = np.where(rng.rand(count) < 0.03, 0,
                             np.clip(np.rint(living_area * rng.uniform(0.45, 1.1, count)), 0, 3000))
    bedrooms = np.clip(np.rint(living_area / 520 + rng.normal(0, 0.7, count)), 1, 6)
    rooms = np.clip(bedrooms + 2 + np.rint(rng.uniform(0, 3, count)), 3, 12)
    full_baths = np.clip(np.rint(living_area / 1100 + rng.normal(0, 0.4, count)), 1, 4)
    half_baths = np.clip(np.rint(rng.uniform(-0.6, 1.6, count)), 0, 2)
    fireplaces = np.clip(np.rint(rng.normal(0.2 + 0.08 * quality, 0.5, count)), 0, 3)
    garage_cars = np.clip(np.rint(rng.normal(0.6 + 0.22 * quality, 0.6, count)), 0, 4)
    garage_area = np.where(garage_cars == 0, 0, np.rint(garage_cars * rng.uniform(220, 290, count)))
    wood_deck = np.where(rng.rand(count) < 0.5, 0, np.rint(rng.gamma(2.0, 90.0, count)))
    porch = np.where(rng.rand(count) < 0.45, 0, np.rint(rng.gamma(1.6, 35.0, count)))
    pool = np.where(rng.rand(count) < 0.985, 0, np.rint(rng.uniform(300, 740, count)))
    month_sold = rng.randint(1, 13, count)

    log_price = (10.62 + 0.085 * quality + 0.035 * (condition - 5)
                 + 0.0025 * (year_built - 1970) + 0.0012 * (remodeled - year_built)
                 + 0.00034 * living_area + 0.00012 * basement_area + 0.09 * np.log(lot_area / 9000)
                 + 0.03 * full_baths + 0.015 * half_baths + 0.035 * fireplaces + 0.045 * garage_cars
                 + 0.00015 * wood_deck + 0.0001 * porch + 0.00008 * pool
                 - 0.012 * (bedrooms - 3) + rng.normal(0, 0.09, count))
    price = np.rint(np.exp(log_price) / 100) * 100

    columns = (lot_area, quality, condition, year_built, remodeled, basement_area, living_area, full_baths,
               half_baths, bedrooms, rooms, fireplaces, garage_cars, garage_area, wood_deck, porch, pool,
               month_sold, price)
    return np.column_stack(columns).astype(np.int64)


def generate_property_val(root):
    base = os.path.join(root, "property-val")
    rng = np.random.RandomState(PROPERTY_SEED)
    total = sum(size for _, _, size in PROPERTY_SPLITS)
    rows = property_rows(total, rng)
    header = list(PROPERTY_FEATURES) + [PROPERTY_TARGET]
    start = 0
    for name, filename, size in PROPERTY_SPLITS:
        _write_text(os.path.join(base, "data", "features", name, filename),
                    _csv_text(rows[start:start + size], header))
        start += size
    payload_row = rows[total - 1]  # the last house of the test split
    payload = {feature: int(value) for feature, value in zip(PROPERTY_FEATURES, payload_row)}
    _write_text(os.path.join(base, "test_payload.json"), _json_text(payload))


def main(argv=None):
    parser = argparse.ArgumentParser(description="Regenerate the templates' data files.")
    parser.add_argument("--out", default=TEMPLATES_DIR, help="root to write into (default: templates/)")
    args = parser.parse_args(argv)
    generate_mnist(args.out)
    generate_property_val(args.out)
    print("Generated template data under %s" % args.out)


if __name__ == "__main__":
    main()

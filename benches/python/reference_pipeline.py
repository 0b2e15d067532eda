"""The pipeline a user would otherwise write in Python: PIL decode and resize to 288x288,
onnxruntime with the same model and 2 threads, batches of 8. Prints images/s (model load excluded).

Usage: reference_pipeline.py MODEL.onnx FILE_LIST   (one image path per line)
"""
import sys
import time

import numpy as np
import onnxruntime as ort
from PIL import Image


def load(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB").resize((288, 288), Image.BILINEAR))


def main():
    model, listing = sys.argv[1], sys.argv[2]
    files = [l.strip() for l in open(listing) if l.strip()]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    sess.run(None, {"image": np.stack([load(f) for f in files[:8]])})  # warm up
    t = time.perf_counter()
    for i in range(0, len(files), 8):
        batch = np.stack([load(f) for f in files[i:i + 8]])
        emb = sess.run(None, {"image": batch})[0]
        assert emb.shape[1] == 512
    print(len(files) / (time.perf_counter() - t))


if __name__ == "__main__":
    main()

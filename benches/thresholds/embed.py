"""Embed the benchmark items. Usage: embed.py MODEL POLICY[,POLICY..] OUT.npz [--grocery-subset N] [--train-bg N]"""
import sys, time, json, argparse
import numpy as np
from common import build_items, item_image, policy_array, session

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("policies"); ap.add_argument("out")
ap.add_argument("--grocery-subset", type=int, default=0); ap.add_argument("--train-bg", type=int, default=0)
a = ap.parse_args()
pols = a.policies.split(",")
items = build_items(a.grocery_subset or None, a.train_bg)
sess = session(a.model)
embs = {p: np.zeros((len(items), 512), np.float32) for p in pols}
tinf = {p: 0.0 for p in pols}
t0 = time.time()
for i, it in enumerate(items):
    im = item_image(it)
    for p in pols:
        x = policy_array(im, p)[None]
        t = time.perf_counter(); embs[p][i] = sess.run(None, {"image": x})[0][0]; tinf[p] += time.perf_counter() - t
    if i % 200 == 0: print(i, len(items), round(time.time() - t0), flush=True)
meta = [{k: v for k, v in it.items() if k != "gen"} for it in items]
np.savez(a.out, **{p: e for p, e in embs.items()}, meta=json.dumps(meta), tinf=json.dumps(tinf))
print("done", a.out, round(time.time() - t0), tinf)

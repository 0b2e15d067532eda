"""Inference-only throughput on 200 pre-decoded, pre-resized images, 2 intra-op threads."""
import json, random, sys, time
import numpy as np
from common import build_items, item_image, policy_array, session, embed_arrays

items = [it for it in build_items(None, 0)]
rng = random.Random(7)
sample = rng.sample(items, 200)
ims = [item_image(it) for it in sample]
configs = [("short288", 1), ("squash288", 1), ("squash288", 8), ("centercrop288", 8), ("centercrop288", 1), ("short400", 1)]
res = {}
for model in ["sscd_distilled", "sscd"]:
    sess = session(model)
    for pol, b in configs:
        arrs = [policy_array(im, pol) for im in ims]
        embed_arrays(sess, arrs[:8], b)  # warm-up
        reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
        dts = []
        for _ in range(reps):  # best of `reps` passes (the machine is shared with a Rust build)
            t = time.perf_counter(); e = embed_arrays(sess, arrs, b); dts.append(time.perf_counter() - t)
        dt = min(dts)
        px = float(np.mean([a.shape[0] * a.shape[1] for a in arrs]))
        res[f"{model}/{pol}/b{b}"] = dict(images_per_s=200 / dt, seconds=dt, mean_pixels=px)
        print(model, pol, b, round(200 / dt, 2), "img/s", flush=True)
        if pol == "squash288":
            res.setdefault("_emb", {})[f"{model}/b{b}"] = e
    d = res["_emb"]
    diff = float(np.abs(d[f"{model}/b1"] - d[f"{model}/b8"]).max())
    res[f"{model}/squash288_b1_vs_b8_max_abs_diff"] = diff
    print(model, "b1 vs b8 max abs diff", diff)
res.pop("_emb")
res["n_aspect_not_square"] = sum(1 for im in ims if im.width != im.height)
json.dump(res, open(sys.argv[1] if len(sys.argv) > 1 else "speed.json", "w"), indent=1)

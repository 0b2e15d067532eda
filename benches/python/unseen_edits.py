"""Edits of the copy-detection catalog photos that knockoff's own generator (src/bench/attack.rs) does
not make, to check that its figures hold on edits the defaults were not tuned on
(docs/benchmarks-notebook.md, "Near-duplicates by perceptual hash").

Usage:
  unseen_edits.py make BENCH_DIR OUT_DIR    writes OUT_DIR/<edit>/<reference>.jpg and
                                            OUT_DIR/listings.jsonl (photos read in place)
  knockoff --data RUN/work/catalog-copy scan OUT_DIR/listings.jsonl -o OUT_DIR/verdicts.jsonl
  unseen_edits.py score OUT_DIR/verdicts.jsonl
RUN is the --out directory of a `knockoff bench accuracy` run (its copy catalog). Needs numpy and
Pillow (bash benches/python/setup.sh).
"""
import collections
import json
import os
import random
import sys
import zlib

IMAGE = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")


def references(bench):
    """The copy task's catalog photos, named as `knockoff bench accuracy` names them."""
    def images(d):
        return sorted(os.path.join(d, f) for f in os.listdir(d) if f.lower().endswith(IMAGE))

    stem = lambda p: os.path.splitext(os.path.basename(p))[0]
    refs = [("skimage-" + stem(p), p) for p in images(os.path.join(bench, "skimage"))]
    refs.append(("pdq-bridge", os.path.join(bench, "pdq/bridge-mods/aaa-orig.jpg")))
    refs.append(("pdq-exif", os.path.join(bench, "pdq/exif-rotn/exif-rotn-1.jpg")))
    refs += [("background-" + stem(p), p) for p in images(os.path.join(bench, "backgrounds"))]
    iconic = os.path.join(bench, "grocery/dataset/iconic-images-and-descriptions")
    for root, _, files in sorted(os.walk(iconic)):
        for f in sorted(files):
            if f.lower().endswith(IMAGE) and stem(f).endswith("_Iconic"):
                refs.append(("iconic-" + stem(f)[: -len("_Iconic")], os.path.join(root, f)))
    return refs


def edits():
    import numpy as np
    from PIL import Image, ImageDraw, ImageEnhance, ImageOps

    def noise(im, r):
        a = np.asarray(im).astype(np.float32) + np.random.default_rng(r.randrange(1 << 30)).normal(0, 25, (im.height, im.width, 3))
        return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))

    def pixelate(im, r):
        small = im.resize((max(1, im.width // 10), max(1, im.height // 10)), Image.BILINEAR)
        return small.resize(im.size, Image.NEAREST)

    def crop(im, r, keep):
        w, h = im.size
        cw, ch = int(w * keep), int(h * keep)
        x, y = r.randrange(0, w - cw + 1), r.randrange(0, h - ch + 1)
        return im.crop((x, y, x + cw, y + ch))

    def banner(im, r):
        c = crop(im, r, 0.8)
        d = ImageDraw.Draw(c)
        d.rectangle((0, c.height - c.height // 6, c.width, c.height), fill=(220, 20, 20))
        d.text((10, c.height - c.height // 8), "SALE -70% ONLY TODAY", fill=(255, 255, 255))
        return c

    def sticker(im, r):
        c = im.copy()
        w, h = c.size
        ImageDraw.Draw(c).ellipse((w * 0.3, h * 0.3, w * 0.7, h * 0.7), fill=(255, 200, 0))
        return c

    def phone(im, r):
        W, H = 1080, 1920
        c = Image.new("RGB", (W, H), (245, 245, 245))
        d = ImageDraw.Draw(c)
        d.rectangle((0, 0, W, 160), fill=(40, 40, 40))
        d.rectangle((0, H - 300, W, H), fill=(230, 230, 230))
        for i in range(6):
            d.text((40, H - 280 + i * 40), "Item description line %d  free shipping" % i, fill=(0, 0, 0))
        k = min(W * 0.9 / im.width, H * 0.45 / im.height)
        t = im.resize((int(im.width * k), int(im.height * k)), Image.BICUBIC)
        c.paste(t, ((W - t.width) // 2, 260))
        return c

    return {
        "stretch": lambda im, r: im.resize((int(im.width * 1.6), im.height)),
        "flip_v": lambda im, r: ImageOps.flip(im),
        "noise": noise,
        "pixelate": pixelate,
        "combo": banner,
        "crop_hard": lambda im, r: crop(im, r, 0.6),
        "rotate_big": lambda im, r: im.rotate(r.choice([-1, 1]) * r.uniform(30, 45), expand=True, resample=Image.BICUBIC),
        "sticker": sticker,
        "posterize": lambda im, r: ImageOps.posterize(ImageEnhance.Color(im).enhance(0.4), 3),
        "upscale": lambda im, r: im.resize((int(im.width * 2.5), int(im.height * 2.5)), Image.BICUBIC),
        "phone": phone,
        "dark": lambda im, r: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(0.4)).enhance(1.4),
    }


def make(bench, out):
    from PIL import Image, ImageOps

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "listings.jsonl"), "w") as listings:
        for rid, path in references(bench):
            im = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
            im.thumbnail((1024, 1024))
            for name, edit in edits().items():
                r = random.Random(zlib.crc32(f"{rid}/{name}".encode()))
                dest = os.path.join(out, name, rid + ".jpg")
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                edit(im, r).save(dest, quality=85)
                listings.write(json.dumps({"listing_id": f"{name}/{rid}", "images": [os.path.abspath(dest)], "seller_id": "s", "price": 10, "currency": "EUR"}) + "\n")


def match_score(m):
    """A verdict match's score (`similarity` in verdicts written before it was renamed)."""
    return m["score"] if "score" in m else m["similarity"]


def score(verdicts, match_threshold=None):
    n, top, strong, sims = collections.Counter(), collections.Counter(), collections.Counter(), collections.defaultdict(list)
    wrong_hash = 0
    for line in open(verdicts):
        v = json.loads(line)
        edit, rid = v["listing_id"].split("/", 1)
        t = match_threshold if match_threshold is not None else v["thresholds"]["match_threshold"]
        n[edit] += 1
        m = v.get("matches") or []
        if m and m[0]["product_id"] == rid:
            top[edit] += 1
            strong[edit] += match_score(m[0]) >= t
        sims[edit].append(next((match_score(x) for x in m if x["product_id"] == rid), -1.0))
        wrong_hash += sum(1 for x in m if x.get("hash_distance") is not None and x["product_id"] != rid)
    print("| edit | copies | top-1 | top-1 at or above match | median score of the original |")
    print("|---|---:|---:|---:|---:|")
    for e in n:
        s = sorted(sims[e])
        print(f"| {e} | {n[e]} | {100 * top[e] / n[e]:.1f} % | {100 * strong[e] / n[e]:.1f} % | {s[len(s) // 2]:.3f} |")
    print(f"\nmatches confirmed by perceptual hash against a wrong product: {wrong_hash}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 3 and sys.argv[1] == "score":
        score(sys.argv[2])
    else:
        sys.exit(__doc__)

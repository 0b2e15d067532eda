"""Shared code: image loading, deterministic edits, item list, resize policies, ONNX sessions."""
import glob, io, os, random
import numpy as np
from PIL import Image, ImageOps, ImageDraw, ImageFont, ImageEnhance

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BENCH = os.environ.get("BENCH", os.path.join(REPO, "..", "shared", "bench"))
MODELS = {"sscd": os.path.join(REPO, "models", "sscd.onnx"),
          "sscd_distilled": os.path.join(REPO, "models", "sscd_distilled.onnx")}
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
HERE = os.path.dirname(os.path.abspath(__file__))


def to_rgb(im):
    """EXIF orientation applied; alpha composited on white; any mode -> RGB."""
    im = ImageOps.exif_transpose(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    if im.mode in ("I", "I;16", "F"):
        a = np.asarray(im, dtype=np.float64)
        a = 255 * (a - a.min()) / max(a.max() - a.min(), 1e-9)
        im = Image.fromarray(a.astype(np.uint8))
    return im.convert("RGB")


def load(path):
    with Image.open(path) as im:
        im.load()
        return to_rgb(im)


def jpeg(im, q):
    b = io.BytesIO(); im.save(b, "JPEG", quality=q); b.seek(0)
    return Image.open(b).convert("RGB")


def hue_shift(im, shift=0.15):
    h, s, v = im.convert("HSV").split()
    h = h.point(lambda x: (x + int(round(shift * 256))) % 256)
    return Image.merge("HSV", (h, s, v)).convert("RGB")


def text_overlay(im):
    im = im.copy(); d = ImageDraw.Draw(im)
    w, h = im.size
    size = max(10, int(w / 12))
    f = ImageFont.truetype(FONT, size)
    txt = "SALE -80% $19.99"
    tw = d.textlength(txt, font=f)
    x = (w - tw) / 2; y = h * 0.70
    d.text((x, y), txt, font=f, fill=(255, 255, 0), stroke_width=max(1, size // 12), stroke_fill=(200, 0, 0))
    return im


def crop_keep(im, frac, rng):
    w, h = im.size
    cw, ch = int(round(w * frac)), int(round(h * frac))
    x = rng.randint(0, w - cw); y = rng.randint(0, h - ch)
    return im.crop((x, y, x + cw, y + ch))


def paste_on(im, bg):
    bg = bg.copy()
    if max(bg.size) > 1280:
        s = 1280 / max(bg.size); bg = bg.resize((round(bg.width * s), round(bg.height * s)), Image.BILINEAR)
    s = min(0.6 * bg.width / im.width, 0.6 * bg.height / im.height)
    fg = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.BILINEAR)
    rng = random.Random(hash((im.size, bg.size)) & 0xffff)
    x = rng.randint(0, bg.width - fg.width); y = rng.randint(0, bg.height - fg.height)
    bg.paste(fg, (x, y))
    return bg


FAMILIES = ["crop60", "crop80", "jpeg20", "jpeg40", "text", "hue", "bright_contrast",
            "down4", "mirror", "rot8", "border10", "paste_bg60", "grey"]


def make_edit(fam, im, rng, bg=None):
    if fam == "crop60": return crop_keep(im, 0.6, rng)
    if fam == "crop80": return crop_keep(im, 0.8, rng)
    if fam == "jpeg20": return jpeg(im, 20)
    if fam == "jpeg40": return jpeg(im, 40)
    if fam == "text": return text_overlay(im)
    if fam == "hue": return hue_shift(im, 0.15)
    if fam == "bright_contrast":
        return ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.3)).enhance(1.4)
    if fam == "down4": return im.resize((max(1, im.width // 4), max(1, im.height // 4)), Image.BILINEAR)
    if fam == "mirror": return ImageOps.mirror(im)
    if fam == "rot8": return im.rotate(8, resample=Image.BILINEAR, expand=True, fillcolor=(0, 0, 0))
    if fam == "border10":
        b = max(1, round(0.1 * min(im.size)))
        return ImageOps.expand(im, border=b, fill=(255, 255, 255))
    if fam == "paste_bg60": return paste_on(im, bg)
    if fam == "grey": return im.convert("L").convert("RGB")
    raise ValueError(fam)


def grocery_list(split):
    rows = []
    with open(f"{BENCH}/grocery/dataset/{split}.txt") as f:
        for line in f:
            p = line.split(",")[0].strip()
            if not p: continue
            parts = p.split("/")
            rows.append((p, parts[1], parts[-2]))  # path, coarse-top (Packages/Fruit/Vegetables), fine class dir
    return rows


def iconic_packages():
    out = []
    for p in sorted(glob.glob(f"{BENCH}/grocery/dataset/iconic-images-and-descriptions/Packages/*/*/*_Iconic.jpg")):
        out.append((p.split("/")[-2], p))
    return out


def build_items(grocery_subset=None, train_bg=0):
    """Returns list of dicts: id, role, path or generator, source (ref id), family, cls.
    role in ref | query | distractor | shop_pkg | shop_produce | bgset
    """
    items = []
    refs = []
    for p in sorted(glob.glob(f"{BENCH}/skimage/*")):
        refs.append(("sk:" + os.path.basename(p), p))
    bgs = sorted(glob.glob(f"{BENCH}/backgrounds/*.jpg"))
    for p in bgs:
        refs.append(("bg:" + os.path.basename(p), p))
    refs.append(("pdq:aaa-orig.jpg", f"{BENCH}/pdq/bridge-mods/aaa-orig.jpg"))
    for cls, p in iconic_packages():
        refs.append(("icon:" + cls, p))
    for rid, p in refs:
        items.append(dict(id=rid, role="ref", path=p, source=rid, family="ref",
                          cls=rid[5:] if rid.startswith("icon:") else None))
    bg_ids = [r for r, _ in refs if r.startswith("bg:")]
    bg_paths = dict(refs)
    # ready-made pdq edits of aaa-orig
    src = "pdq:aaa-orig.jpg"
    for p in sorted(glob.glob(f"{BENCH}/pdq/bridge-mods/*.jpg")):
        if p.endswith("aaa-orig.jpg"): continue
        items.append(dict(id="pdqmod:" + os.path.basename(p), role="query", path=p, source=src, family="pdq_bridge_mods"))
    for p in sorted(glob.glob(f"{BENCH}/pdq/dih/*.jpg")):
        items.append(dict(id="pdqdih:" + os.path.basename(p), role="query", path=p, source=src, family="pdq_dih"))
    for p in sorted(glob.glob(f"{BENCH}/pdq/misc-images/modes/*")):
        items.append(dict(id="pdqmode:" + os.path.basename(p), role="query", path=p, source=src, family="pdq_modes"))
    # generated edits
    for k, (rid, p) in enumerate(refs):
        for fam in FAMILIES:
            rng = random.Random(f"{rid}/{fam}")
            bgid = None
            if fam == "paste_bg60":
                choices = [b for b in bg_ids if b != rid]
                bgid = choices[random.Random(rid).randrange(len(choices))]
            items.append(dict(id=f"edit:{fam}:{rid}", role="query", source=rid, family=fam,
                              gen=(fam, p, f"{rid}/{fam}", bg_paths[bgid] if bgid else None), backdrop=bgid))
    for p in sorted(glob.glob(f"{BENCH}/pdq/labelme-subset/*.jpg")):
        items.append(dict(id="labelme:" + os.path.basename(p), role="distractor", path=p, source=None, family="labelme"))
    g = grocery_list("test")
    if grocery_subset:
        rng = random.Random(1234); g = sorted(rng.sample(g, grocery_subset))
    for p, top, cls in g:
        role = "shop_pkg" if top == "Packages" else "shop_produce"
        items.append(dict(id="shop:" + p, role=role, path=f"{BENCH}/grocery/dataset/{p}", source=None,
                          family=role, cls=cls))
    if train_bg:
        tr = [r for r in grocery_list("train") if r[1] != "Packages"]
        tr = sorted(random.Random(99).sample(tr, train_bg))
        for p, top, cls in tr:
            items.append(dict(id="bgset:" + p, role="bgset", path=f"{BENCH}/grocery/dataset/{p}", source=None,
                              family="bgset", cls=cls))
    return items


_cache = {}


def item_image(it):
    if "path" in it:
        return load(it["path"])
    fam, p, seed, bgp = it["gen"]
    im = _cache.get(p)
    if im is None:
        _cache.clear(); im = load(p); _cache[p] = im
    bg = load(bgp) if bgp else None
    return make_edit(fam, im, random.Random(seed), bg)


# ---- resize policies ----
def short_side(im, s):
    w, h = im.size
    if w <= h: nw, nh = s, max(1, round(h * s / w))
    else: nw, nh = max(1, round(w * s / h)), s
    return im.resize((nw, nh), Image.BILINEAR)


def policy_array(im, policy):
    if policy == "short288": out = short_side(im, 288)
    elif policy == "short400": out = short_side(im, 400)
    elif policy == "squash288": out = im.resize((288, 288), Image.BILINEAR)
    elif policy == "centercrop288":
        r = short_side(im, 288); w, h = r.size
        x = (w - 288) // 2; y = (h - 288) // 2
        out = r.crop((x, y, x + 288, y + 288))
    else: raise ValueError(policy)
    return np.asarray(out, dtype=np.uint8)


def session(model):
    import onnxruntime as ort
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(MODELS[model], o, providers=["CPUExecutionProvider"])


def embed_arrays(sess, arrs, batch):
    out = []
    for i in range(0, len(arrs), batch):
        chunk = arrs[i:i + batch]
        if batch == 1 or len({a.shape for a in chunk}) == 1:
            x = np.stack(chunk)
            out.append(sess.run(None, {"image": x})[0])
        else:
            for a in chunk: out.append(sess.run(None, {"image": a[None]})[0])
    return np.concatenate(out).astype(np.float32)

#!/usr/bin/env python3
"""Deterministic generator for knockoff's synthetic test data.

Renders a small reference catalog of fictional brands, marketplace listings
containing edited (counterfeit) copies, unrelated products and deliberately
broken inputs, plus a folder of decoder test images in many formats.

Re-run (from anywhere; writes next to this script):

    python3 -m venv /tmp/td-venv
    /tmp/td-venv/bin/pip install pillow==13.0.0 numpy
    /tmp/td-venv/bin/python testdata/make_testdata.py

Everything is seeded (SEED below) and uses only Pillow's bundled default font,
so the output is byte-for-byte reproducible with the same Pillow/numpy
versions (JPEG/PNG/WebP bytes may differ across library versions; the pictures
do not). The script deletes and rewrites catalog/, listings/ and formats/.

Outputs (all paths relative to this directory):
  catalog.csv, catalog_extra.jsonl, catalog/<brand>/<product>_<n>.jpg
  listings.jsonl, listings.csv, listings/*
  expected.json   listing_id -> {expected, source_product, source_image, edit}
  formats/*       one 200x150 picture in many encodings (+ upright.png)
"""

import csv
import io
import json
import math
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps, ImageEnhance

SEED = 20240611
OUT = Path(__file__).resolve().parent


def font(size):
    return ImageFont.load_default(size=size)


# ---------------------------------------------------------------------------
# procedural rendering
# ---------------------------------------------------------------------------

def rand_color(rng, lo=0, hi=255):
    return tuple(int(v) for v in rng.integers(lo, hi + 1, size=3))


def palette(rng, n=5):
    """Random palette: colours spread around the hue circle with random s/v."""
    base = rng.random()
    cols = []
    for i in range(n):
        h = (base + i / n + rng.normal(0, 0.05)) % 1.0
        s = rng.uniform(0.45, 1.0)
        v = rng.uniform(0.35, 1.0)
        cols.append(hsv_to_rgb(h, s, v))
    rng.shuffle(cols)
    return cols


def hsv_to_rgb(h, s, v):
    i = int(h * 6) % 6
    f = h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i]
    return (int(r * 255), int(g * 255), int(b * 255))


def smooth_noise(rng, w, h, cells):
    """Low-frequency value noise in [0,1], shape (h, w)."""
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    im = Image.fromarray((g * 255).astype(np.uint8)).resize((w, h), Image.BICUBIC)
    return np.asarray(im, dtype=np.float32) / 255.0


def _fft_field(rng, w, h, beta):
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None]
    k = np.sqrt(fx ** 2 + fy ** 2)
    k[0, 0] = 1
    spec = (rng.normal(size=(h, w)) + 1j * rng.normal(size=(h, w))) / k ** (beta / 2)
    x = np.real(np.fft.ifft2(spec))
    return (x - x.min()) / (x.max() - x.min() + 1e-9)


def _ramp(pal, t):
    """Map t in [0,1] through a piecewise-linear colour ramp."""
    p = np.array(pal, np.float32)
    s = t * (len(p) - 1)
    i = np.clip(np.floor(s).astype(int), 0, len(p) - 2)
    f = (s - i)[..., None]
    return p[i] * (1 - f) + p[i + 1] * f


def _shapes(rng, d, w, h, pal, n, smin=10, smax=200, alpha=(120, 256)):
    for _ in range(n):
        c = pal[int(rng.integers(len(pal)))] + (int(rng.integers(*alpha)),)
        x, y = rng.uniform(-50, w), rng.uniform(-50, h)
        s = rng.uniform(smin, smax) * rng.uniform(0.3, 1)
        k = rng.integers(4)
        if k == 0:
            d.ellipse([x, y, x + s, y + s * rng.uniform(.5, 1.5)], fill=c)
        elif k == 1:
            d.polygon([(x + rng.uniform(-s, s), y + rng.uniform(-s, s)) for _ in range(int(rng.integers(3, 6)))], fill=c)
        elif k == 2:
            d.rectangle([x, y, x + s, y + s * rng.uniform(.2, 1)], fill=c)
        else:
            d.line([x, y, x + rng.uniform(-300, 300), y + rng.uniform(-300, 300)], fill=c,
                   width=int(rng.integers(2, 12)))


WORDS = ("alpha beta gamma delta lorem ipsum dolor sit amet quartz vivid 1234 5678 summer "
         "winter express limited studio atelier since 1987 collection").split()

BG_FAMILIES = ["collage", "terrain", "rings", "texty", "warp", "voronoi", "spheres", "mosaic",
               "tiling", "pink", "lines", "bokeh", "scribbles", "bricks", "stars", "plaid"]


def background(rng, w, h, pal, family):
    """Background picture. Each product gets its own *family* of procedural
    content: SSCD rates two images from the same family (e.g. two noise
    fields) as fairly similar, images from different families as unrelated."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if family == "collage":
        im = Image.new("RGB", (w, h), pal[0])
        _shapes(rng, ImageDraw.Draw(im, "RGBA"), w, h, pal, 40)
    elif family == "terrain":
        im = Image.fromarray(_ramp(pal, _fft_field(rng, w, h, 3.0)).astype(np.uint8))
    elif family == "rings":
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        d = np.hypot(xx - cx, yy - cy)
        ang = np.arctan2(yy - cy, xx - cx)
        t = ((d / rng.uniform(15, 40) + np.sin(ang * int(rng.integers(3, 9))) * rng.uniform(0, 1.5)) % len(pal))
        im = Image.fromarray(np.array(pal, np.uint8)[t.astype(int)])
    elif family == "texty":
        im = Image.new("RGB", (w, h), pal[0])
        d = ImageDraw.Draw(im, "RGBA")
        _shapes(rng, d, w, h, pal, 12)
        for _ in range(25):
            d.text((rng.uniform(-20, w), rng.uniform(-10, h)), " ".join(rng.choice(WORDS, 3)),
                   font=font(int(rng.integers(10, 40))), fill=rand_color(rng))
    elif family == "warp":
        chans = []
        for _ in range(3):
            a = np.zeros_like(xx)
            for _ in range(4):
                fx, fy, ph = rng.uniform(-12, 12), rng.uniform(-12, 12), rng.uniform(0, 6.28)
                a += np.sin((xx * fx + yy * fy) / w + ph + 2 * np.sin((xx * rng.uniform(-8, 8) + yy * rng.uniform(-8, 8)) / w))
            chans.append(a)
        im = Image.fromarray(np.clip(128 + np.stack(chans, -1) * 40, 0, 255).astype(np.uint8))
    elif family == "voronoi":
        n = 30
        pts = rng.uniform(0, 1, (n, 2)) * [w, h]
        cols = np.array([pal[int(rng.integers(len(pal)))] for _ in range(n)], np.float32) + rng.normal(0, 20, (n, 3))
        dist = (xx[..., None] - pts[:, 0]) ** 2 + (yy[..., None] - pts[:, 1]) ** 2
        im = Image.fromarray(np.clip(cols[dist.argmin(-1)], 0, 255).astype(np.uint8))
    elif family == "spheres":
        a = _ramp(pal[:3], _fft_field(rng, w, h, 4.0))
        for _ in range(int(rng.integers(4, 9))):
            cx, cy, rad = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(25, 110)
            c = np.array(pal[int(rng.integers(len(pal)))], np.float32)
            dd = np.hypot(xx - cx, yy - cy) / rad
            lx, ly = (xx - cx + rad * .4) / rad, (yy - cy + rad * .4) / rad
            sh = np.clip(1.2 - np.hypot(lx, ly) * .8, 0.2, 1.3)
            msk = dd < 1
            a[msk] = np.clip(c * sh[..., None], 0, 255)[msk]
        im = Image.fromarray(a.astype(np.uint8))
    elif family == "mosaic":
        s = int(rng.integers(24, 64))
        g = rng.integers(0, len(pal), (h // s + 1, w // s + 1))
        im = Image.fromarray(np.array(pal, np.uint8)[g]).resize(((w // s + 1) * s, (h // s + 1) * s), Image.NEAREST)
        im = im.crop((0, 0, w, h))
    elif family == "tiling":
        im = pattern_layer(rng, w, h, pal)
    elif family == "pink":
        chans = [_fft_field(rng, w, h, 2.0) for _ in range(3)]
        im = Image.fromarray(np.clip(np.stack(chans, -1) * 255, 0, 255).astype(np.uint8))
    elif family == "lines":
        im = Image.new("RGB", (w, h), pal[0])
        d = ImageDraw.Draw(im)
        for _ in range(30):
            d.line([rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, h)],
                   fill=pal[int(rng.integers(1, len(pal)))], width=int(rng.integers(1, 5)))
    elif family == "bokeh":
        im = Image.fromarray(_ramp(pal[:2], yy / h).astype(np.uint8)).convert("RGBA")
        lay = Image.new("RGBA", (w, h), (0, 0, 0, 0))
        d = ImageDraw.Draw(lay)
        for _ in range(40):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 45)
            d.ellipse([x - r, y - r, x + r, y + r], fill=pal[int(rng.integers(2, len(pal)))] + (int(rng.integers(60, 160)),))
        im.alpha_composite(lay.filter(ImageFilter.GaussianBlur(4)))
        im = im.convert("RGB")
    elif family == "scribbles":
        im = Image.new("RGB", (w, h), pal[0])
        d = ImageDraw.Draw(im)
        for _ in range(12):
            x, y = rng.uniform(0, w), rng.uniform(0, h)
            pts = []
            for _ in range(40):
                x += rng.normal(0, 18)
                y += rng.normal(0, 18)
                pts.append((x, y))
            d.line(pts, fill=pal[int(rng.integers(1, len(pal)))], width=int(rng.integers(2, 7)), joint="curve")
    elif family == "bricks":
        im = Image.new("RGB", (w, h), pal[0])
        d = ImageDraw.Draw(im)
        bw, bh = int(rng.integers(50, 90)), int(rng.integers(22, 36))
        for j, y in enumerate(range(0, h, bh)):
            for x in range(-bw, w, bw):
                xo = x + (bw // 2 if j % 2 else 0)
                c = np.array(pal[1 + int(rng.integers(0, 2))]) + rng.integers(-25, 25, 3)
                d.rectangle([xo + 2, y + 2, xo + bw - 2, y + bh - 2], fill=tuple(int(v) for v in np.clip(c, 0, 255)))
    elif family == "stars":
        im = Image.fromarray(_ramp([(5, 5, 20), pal[0], (5, 5, 20)], _fft_field(rng, w, h, 3.5)).astype(np.uint8))
        d = ImageDraw.Draw(im)
        for _ in range(250):
            x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.choice([1, 1, 1, 2, 3])
            d.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, int(rng.integers(180, 256))))
    elif family == "plaid":
        a = np.zeros((h, w, 3), np.float32) + np.array(pal[0], np.float32)
        for _ in range(10):
            c = np.array(pal[int(rng.integers(1, len(pal)))], np.float32)
            if rng.random() < 0.5:
                x0, bw = int(rng.uniform(0, w)), int(rng.integers(6, 40))
                a[:, x0:x0 + bw] = a[:, x0:x0 + bw] * 0.5 + c * 0.5
            else:
                y0, bh = int(rng.uniform(0, h)), int(rng.integers(6, 40))
                a[y0:y0 + bh] = a[y0:y0 + bh] * 0.5 + c * 0.5
        im = Image.fromarray(a.astype(np.uint8))
    else:
        raise ValueError(family)
    return im


PATTERNS = ["stripes", "checks", "dots", "waves", "zigzag", "camo", "solid", "triangles", "scales",
            "monogram", "grid"]


def pattern_layer(rng, w, h, pal, kind=None):
    """Full-size pattern to fill a product silhouette."""
    if kind is None:
        kind = rng.choice(PATTERNS[:5])
    base = pal[0]
    im = Image.new("RGB", (w, h), base)
    d = ImageDraw.Draw(im)
    if kind == "camo":
        for _ in range(45):
            x, y, r = rng.uniform(-20, w), rng.uniform(-20, h), rng.uniform(12, 45)
            pts = [(x + r * rng.uniform(0.5, 1.3) * math.cos(a), y + r * rng.uniform(0.5, 1.3) * math.sin(a))
                   for a in np.linspace(0, 2 * math.pi, 9)[:-1]]
            d.polygon(pts, fill=pal[1 + int(rng.integers(0, 3))])
    elif kind == "solid":
        for _ in range(4):  # leather panels with stitching
            x0, y0 = rng.uniform(0, w * 0.7), rng.uniform(0, h * 0.7)
            x1, y1 = x0 + rng.uniform(40, w * 0.5), y0 + rng.uniform(30, h * 0.4)
            d.rounded_rectangle([x0, y0, x1, y1], radius=14, fill=pal[1])
            for t in range(int(x0 + 8), int(x1 - 8), 10):
                d.line([t, y0 + 5, t + 5, y0 + 5], fill=pal[4], width=2)
                d.line([t, y1 - 5, t + 5, y1 - 5], fill=pal[4], width=2)
    elif kind == "triangles":
        s = int(rng.integers(26, 44))
        for j, y in enumerate(range(0, h + s, s)):
            for i, x in enumerate(range(-s, w + s, s)):
                c = pal[1 + (i + j) % 3]
                d.polygon([(x, y + s), (x + s / 2, y), (x + s, y + s)], fill=c)
    elif kind == "scales":
        s = int(rng.integers(18, 30))
        for j, y in enumerate(range(-s, h + s, s // 2)):
            for x in range(-s, w + s, s):
                xo = x + (s // 2 if j % 2 else 0)
                d.pieslice([xo - s / 2, y, xo + s / 2, y + s], 0, 180, fill=pal[1 + j % 2], outline=pal[3])
    elif kind == "monogram":
        s = int(rng.integers(34, 50))
        letters = "".join(rng.choice(list("LMNQXKR"), 2))
        f = font(int(s * 0.5))
        for j, y in enumerate(range(0, h + s, s)):
            for x in range(0, w + s, s):
                xo = x + (s // 2 if j % 2 else 0)
                if (x // s + j) % 2:
                    d.text((xo, y), letters, font=f, fill=pal[1], anchor="mm")
                else:
                    d.regular_polygon((xo, y, s * 0.22), 4, rotation=45, fill=pal[2])
    elif kind == "grid":
        s = int(rng.integers(14, 26))
        for x in range(0, w, s):
            d.line([x, 0, x, h], fill=pal[1], width=3)
        for y in range(0, h, int(s * 1.6)):
            d.line([0, y, w, y], fill=pal[2], width=6)
    elif kind == "stripes":
        step = int(rng.integers(12, 34))
        width = int(rng.integers(4, step - 2))
        tilt = rng.uniform(-1, 1) * h
        for i, x in enumerate(range(-h, w + h, step)):
            d.line([x, 0, x + tilt, h], fill=pal[1 + i % 2], width=width)
    elif kind == "checks":
        s = int(rng.integers(18, 45))
        for y in range(0, h, s):
            for x in range(0, w, s):
                if (x // s + y // s) % 2:
                    d.rectangle([x, y, x + s - 1, y + s - 1], fill=pal[1])
        for y in range(0, h, s):
            d.line([0, y + s // 2, w, y + s // 2], fill=pal[2], width=2)
    elif kind == "dots":
        s = int(rng.integers(20, 40))
        r = s * rng.uniform(0.2, 0.4)
        for j, y in enumerate(range(0, h + s, s)):
            for x in range(0, w + s, s):
                xo = x + (s // 2 if j % 2 else 0)
                d.ellipse([xo - r, y - r, xo + r, y + r], fill=pal[1 + (x // s) % 2])
    elif kind == "waves":
        amp = rng.uniform(6, 18)
        per = rng.uniform(40, 90)
        s = int(rng.integers(14, 28))
        for i, y0 in enumerate(range(-s, h + s, s)):
            pts = [(x, y0 + amp * math.sin(x / per * 2 * math.pi)) for x in range(0, w + 8, 8)]
            d.line(pts, fill=pal[1 + i % 2], width=int(s * 0.45))
    else:
        s = int(rng.integers(18, 32))
        for i, y0 in enumerate(range(-s, h + s, s)):
            pts = [(x, y0 + (s * 0.6 if (x // s) % 2 else 0)) for x in range(0, w + s, s)]
            d.line(pts, fill=pal[1 + i % 2], width=int(s * 0.35))
    # a few random accent blobs so two products with the same kind differ
    for _ in range(int(rng.integers(3, 7))):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(8, 30)
        d.ellipse([x - r, y - r, x + r, y + r], fill=pal[3 % len(pal)], outline=pal[4 % len(pal)], width=3)
    return im


def shape_mask(rng, kind, w, h):
    """Silhouette of the product (L mask) and a list of detail-drawing callbacks."""
    m = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(m)
    j = lambda s: rng.uniform(-s, s)  # noqa: E731
    if kind == "sneaker":
        pts = [(0.05, 0.80), (0.05 + j(.03), 0.55), (0.30 + j(.05), 0.42), (0.42 + j(.05), 0.12 + j(.05)),
               (0.62 + j(.05), 0.10 + j(.04)), (0.70, 0.40 + j(.05)), (0.95, 0.55 + j(.05)), (0.97, 0.80)]
        d.polygon([(x * w, y * h) for x, y in pts], fill=255)
        d.rounded_rectangle([0.02 * w, 0.76 * h, 0.99 * w, 0.92 * h], radius=int(0.06 * h), fill=255)
    elif kind == "watch":
        cx, cy, r = 0.5 * w, 0.5 * h, 0.30 * min(w, h)
        sw = r * rng.uniform(0.75, 1.0)
        d.rectangle([cx - sw / 2, 0, cx + sw / 2, h], fill=255)
        d.ellipse([cx - r * 1.18, cy - r * 1.18, cx + r * 1.18, cy + r * 1.18], fill=255)
    elif kind == "handbag":
        top = 0.35 + j(0.06)
        inset = 0.08 + abs(j(0.08))
        d.polygon([(inset * w, top * h), ((1 - inset) * w, top * h), (0.97 * w, 0.95 * h), (0.03 * w, 0.95 * h)], fill=255)
        hw = rng.uniform(0.18, 0.30)
        d.arc([(0.5 - hw) * w, 0.05 * h, (0.5 + hw) * w, (top + 0.25) * h], 180, 360, fill=255, width=int(0.05 * h))
    elif kind == "bottle":
        d.rounded_rectangle([0.28 * w, 0.30 * h, 0.72 * w, 0.97 * h], radius=int(0.08 * w), fill=255)
        d.rectangle([0.42 * w, 0.05 * h, 0.58 * w, 0.35 * h], fill=255)
    elif kind == "lamp":
        d.polygon([(0.25 * w, 0.45 * h), (0.75 * w, 0.45 * h), (0.62 * w, 0.08 * h), (0.38 * w, 0.08 * h)], fill=255)
        d.rectangle([0.47 * w, 0.45 * h, 0.53 * w, 0.88 * h], fill=255)
        d.ellipse([0.30 * w, 0.84 * h, 0.70 * w, 0.96 * h], fill=255)
    else:  # blob
        pts = []
        k = int(rng.integers(7, 12))
        for i in range(k):
            a = 2 * math.pi * i / k
            rr = rng.uniform(0.3, 0.48)
            pts.append((0.5 * w + rr * w * math.cos(a), 0.5 * h + rr * h * math.sin(a)))
        d.polygon(pts, fill=255)
    return m


def product_layer(rng, kind, pal, brand, name, pattern=None):
    """RGBA image of the product itself (pattern inside a silhouette + logo)."""
    w, h = (420, 300) if kind in ("sneaker",) else (320, 340) if kind == "handbag" else (300, 360)
    mask = shape_mask(rng, kind, w, h)
    pat = pattern_layer(rng, w, h, pal, pattern)
    d = ImageDraw.Draw(pat)
    if kind == "watch":
        cx, cy, r = w / 2, h / 2, 0.30 * min(w, h)
        d.ellipse([cx - r * 1.15, cy - r * 1.15, cx + r * 1.15, cy + r * 1.15], fill=pal[2], outline=pal[4], width=6)
        dial = pal[int(rng.integers(0, 2))]
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=dial)
        for i in range(12):
            a = i / 12 * 2 * math.pi
            d.line([cx + 0.8 * r * math.sin(a), cy - 0.8 * r * math.cos(a),
                    cx + 0.95 * r * math.sin(a), cy - 0.95 * r * math.cos(a)], fill=pal[3], width=4)
        for ln, wd in ((0.55, 7), (0.85, 4)):
            a = rng.uniform(0, 2 * math.pi)
            d.line([cx, cy, cx + ln * r * math.sin(a), cy - ln * r * math.cos(a)], fill=pal[4], width=wd)
        if rng.random() < 0.6:  # sub-dials
            for k in range(int(rng.integers(1, 4))):
                a = k * 2.1 + rng.uniform(0, 1)
                sx, sy, sr = cx + 0.45 * r * math.sin(a), cy + 0.45 * r * math.cos(a), 0.2 * r
                d.ellipse([sx - sr, sy - sr, sx + sr, sy + sr], outline=pal[3], width=3)
        d.text((cx, cy - 0.4 * r), brand.upper(), font=font(int(r * 0.22)), fill=pal[3], anchor="mm")
    elif kind == "sneaker":
        # sole, laces, swoosh-like stripe
        d.rectangle([0, 0.78 * h, w, h], fill=pal[4])
        for i in range(int(rng.integers(3, 6))):
            x = (0.40 + 0.05 * i) * w
            d.line([x, 0.18 * h + i * 0.05 * h, x + 0.07 * w, 0.22 * h + i * 0.05 * h], fill=pal[3], width=5)
        a0 = rng.uniform(0.2, 0.4)
        d.line([(0.15 * w, 0.70 * h), (0.45 * w, (a0 + 0.2) * h), (0.85 * w, 0.60 * h)], fill=pal[2], width=14)
        d.text((0.22 * w, 0.62 * h), brand, font=font(26), fill=pal[3], anchor="lm")
    elif kind == "handbag":
        y0 = 0.45 * h
        d.rectangle([0, y0, w, y0 + 0.12 * h], fill=pal[2])
        d.rounded_rectangle([0.42 * w, y0 + 0.02 * h, 0.58 * w, y0 + 0.16 * h], radius=6, fill=pal[4], outline=pal[3], width=3)
        d.text((0.5 * w, 0.80 * h), brand.upper(), font=font(30), fill=pal[3], anchor="mm")
    else:
        d.text((0.5 * w, 0.65 * h), brand, font=font(28), fill=pal[3], anchor="mm")
    # shading: darker towards bottom/right, highlight top-left
    arr = np.asarray(pat, np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    shade = 1.15 - 0.35 * (yy / h) - 0.1 * (xx / w)
    arr = np.clip(arr * shade[..., None], 0, 255).astype(np.uint8)
    out = Image.fromarray(arr).convert("RGBA")
    edge = mask.filter(ImageFilter.GaussianBlur(1.2))
    out.putalpha(edge)
    # outline
    ol = mask.filter(ImageFilter.FIND_EDGES).filter(ImageFilter.MaxFilter(3))
    dark = Image.new("RGBA", (w, h), (20, 20, 20, 255))
    out.paste(dark, (0, 0), ol)
    return out


PROD_SCALE = (0.5, 0.65)  # product size relative to the frame
PROD_SHIFT = 0.15
CAPTION_BAR = True


def render_photo(seed, kind, brand, title, size, bg_family, pattern, view=0):
    """One product photo. Same seed => same product; `view` changes background,
    framing and caption so photos 1 and 2 of a product look like two shots."""
    rng = np.random.default_rng(seed)
    pal = palette(rng, 5)
    prod = product_layer(rng, kind, pal, brand, title, pattern)
    # per-product proportions and facing direction (same for every view)
    prod = prod.resize((int(prod.width * rng.uniform(0.8, 1.25)), prod.height), Image.LANCZOS)
    if rng.random() < 0.5:
        prod = ImageOps.mirror(prod)
    vr = np.random.default_rng([seed, view])
    bpal = palette(vr, 5)
    w, h = size
    bg = background(vr, w, h, bpal, bg_family)
    # soft shadow + product placement
    scale = vr.uniform(*PROD_SCALE) * min(w / prod.width, h / prod.height)
    if view:
        scale *= vr.uniform(0.8, 0.95)
    pw, ph = int(prod.width * scale), int(prod.height * scale)
    p = prod.resize((pw, ph), Image.LANCZOS)
    if view:
        p = p.rotate(vr.uniform(-12, 12), resample=Image.BICUBIC, expand=True)
        pw, ph = p.size
    x = int((w - pw) / 2 + vr.uniform(-PROD_SHIFT, PROD_SHIFT) * w)
    y = int((h - ph) / 2 + vr.uniform(-0.05, 0.08) * h)
    sh = Image.new("RGBA", p.size, (0, 0, 0, 0))
    sh.putalpha(p.getchannel("A").point(lambda a: a * 0.45))
    sh = sh.filter(ImageFilter.GaussianBlur(8))
    bg = bg.convert("RGBA")
    bg.alpha_composite(sh, (max(0, x + 10), max(0, y + 12)))
    bg.alpha_composite(p, (max(0, x), max(0, y)))
    bg = bg.convert("RGB")
    d = ImageDraw.Draw(bg, "RGBA")
    # caption: brand + product name + a little catalogue number
    tc = (255, 255, 255) if sum(bpal[0]) < 380 else (15, 15, 15)
    cx, cy = (14, 10) if vr.random() < 0.5 else (w - 14, 10)
    anchor = "la" if cx < w / 2 else "ra"
    if CAPTION_BAR:
        d.rectangle([0, 0, w, 46], fill=bpal[1] + (150,))
    d.text((cx, cy), brand.upper(), font=font(30), fill=tc, anchor=anchor)
    d.text((w / 2, h - 14), title, font=font(20), fill=tc, anchor="md")
    d.text((w - 10 if anchor == "la" else 10, 34), f"No. {seed % 100000:05d}-{view}",
           font=font(11), fill=tc, anchor="rm" if anchor == "la" else "lm")
    return bg


# ---------------------------------------------------------------------------
# catalog definition
# ---------------------------------------------------------------------------

BRANDS = {
    "northwind": dict(name="Northwind", kind="sneaker", currency="EUR", category="sneakers",
                      sellers=["northwind-official", "northwind-store-de"]),
    "acme": dict(name="Acme", kind="watch", currency="USD", category="watches",
                 sellers=["acme-official"]),
    "lumen": dict(name="Lumen", kind="handbag", currency="GBP", category="handbags",
                  sellers=["lumen-official", "lumen-boutique-uk"]),
}

SIZES = [(640, 480), (600, 480), (480, 480), (560, 480), (640, 512), (512, 480)]

# product_id, brand, title, price, n_photos, background family, product pattern.
# Background family and pattern differ between products: SSCD rates two
# renderings that share both as near-duplicates even with different colours.
PRODUCTS = [
    ("nw-runner", "northwind", "Northwind Runner Pro", 129.00, 2, "collage", "stripes"),
    ("nw-trail", "northwind", "Northwind Trail GTX", 159.00, 1, "terrain", "camo"),
    ("nw-court", "northwind", "Northwind Court Classic", 89.00, 2, "rings", "solid"),
    ("acme-chrono", "acme", "Acme Chronograph 42", 450.00, 2, "texty", "triangles"),
    ("acme-diver", "acme", "Acme Diver 300", 389.00, 1, "warp", "waves"),
    ("acme-classic", "acme", "Acme Classic Automatic", 299.00, 1, "voronoi", "scales"),
    ("lumen-tote", "lumen", "Lumen Everyday Tote", 245.00, 2, "spheres", "monogram"),
    ("lumen-clutch", "lumen", "Lumen Evening Clutch", 179.00, 1, "scribbles", "dots"),
    ("lumen-satchel", "lumen", "Lumen Heritage Satchel", 329.00, 2, "tiling", "grid"),
]
EXTRA_PRODUCTS = [
    ("nw-slide", "northwind", "Northwind Pool Slide", 95.00, 1, "mosaic", "checks"),
    ("lumen-mini", "lumen", "Lumen Mini Crossbody", 199.00, 1, "lines", "zigzag"),
]

# unrelated synthetic products (never in the catalog) - different seed & style
UNRELATED = [
    ("bottle", "Orbis", "Orbis Steel Bottle", "pink", "waves"),
    ("lamp", "Kestrel", "Kestrel Desk Lamp", "stars", "dots"),
    ("blob", "Vanta", "Vanta Cushion", "plaid", "camo"),
    ("sneaker", "Zephyr", "Zephyr Flex Runner", "bokeh", "zigzag"),   # same category as Northwind
    ("watch", "Tempo", "Tempo Field Watch", "stars", "stripes"),      # same category as Acme
]


def product_seed(pid):
    return SEED + zlib.crc32(pid.encode()) % 100000


def save_jpeg(im, path, quality=85, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, "JPEG", quality=quality, optimize=True, **kw)


def build_catalog():
    rows, extra = [], []
    images = {}  # "catalog/..../x_1.jpg" -> PIL image
    for plist, target in ((PRODUCTS, rows), (EXTRA_PRODUCTS, extra)):
        for i, (pid, brand, title, price, n, fam, pat) in enumerate(plist):
            b = BRANDS[brand]
            seed = product_seed(pid)
            paths = []
            for v in range(n):
                size = SIZES[(seed + v) % len(SIZES)]
                im = render_photo(seed, b["kind"], b["name"], title, size, fam, pat, view=v)
                rel = f"catalog/{brand}/{pid}_{v + 1}.jpg"
                save_jpeg(im, OUT / rel)
                images[rel] = im
                paths.append(rel)
            target.append(dict(brand=b["name"], product_id=pid, title=title, price=f"{price:.2f}",
                               currency=b["currency"], images=paths,
                               authorized_sellers=b["sellers"], category=b["category"]))
    with open(OUT / "catalog.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(["brand", "product_id", "title", "price", "currency", "images",
                     "authorized_sellers", "category"])
        for r in rows:
            wr.writerow([r["brand"], r["product_id"], r["title"], r["price"], r["currency"],
                         "|".join(r["images"]), "|".join(r["authorized_sellers"]), r["category"]])
    with open(OUT / "catalog_extra.jsonl", "w") as f:
        for r in extra:
            r = dict(r, price=float(r["price"]))
            f.write(json.dumps(r) + "\n")
    return {r["product_id"]: r for r in rows + extra}, images


# ---------------------------------------------------------------------------
# edits applied by counterfeiters
# ---------------------------------------------------------------------------

def jpeg_roundtrip(im, q):
    b = io.BytesIO()
    im.save(b, "JPEG", quality=q)
    b.seek(0)
    return Image.open(b).convert("RGB")


def crop(im, keep, rng):
    w, h = im.size
    cw, ch = int(w * math.sqrt(keep)), int(h * math.sqrt(keep))
    x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return im.crop((x, y, x + cw, y + ch))


def overlay(im, text, rng, color=(230, 20, 20)):
    im = im.copy()
    d = ImageDraw.Draw(im, "RGBA")
    w, h = im.size
    f = font(int(h * 0.11))
    x, y = rng.uniform(0.05, 0.35) * w, rng.uniform(0.55, 0.75) * h
    bb = d.textbbox((x, y), text, font=f)
    d.rectangle([bb[0] - 8, bb[1] - 6, bb[2] + 8, bb[3] + 6], fill=(255, 240, 0, 220))
    d.text((x, y), text, font=f, fill=color)
    return im


def hue_shift(im, amount):
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + amount) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def on_plain(im, frac, color, size=None):
    w, h = size or im.size
    canvas = Image.new("RGB", (w, h), color)
    s = frac * min(w / im.width, h / im.height)
    p = im.resize((int(im.width * s), int(im.height * s)), Image.LANCZOS)
    canvas.paste(p, ((w - p.width) // 2, (h - p.height) // 2))
    return canvas


EDITS = {
    "crop70": lambda im, r: crop(im, 0.70, r),
    "crop60": lambda im, r: crop(im, 0.60, r),
    "crop85": lambda im, r: crop(im, 0.85, r),
    "jpeg20": lambda im, r: jpeg_roundtrip(im, 20),
    "jpeg40": lambda im, r: jpeg_roundtrip(im, 40),
    "text-sale": lambda im, r: overlay(im, "SALE -80%", r),
    "text-price": lambda im, r: jpeg_roundtrip(overlay(im, "$19.99", r, (0, 0, 0)), 35),
    "hue": lambda im, r: hue_shift(im, 40),
    "bright-contrast": lambda im, r: ImageEnhance.Contrast(ImageEnhance.Brightness(im).enhance(1.35)).enhance(0.7),
    "downscale3": lambda im, r: im.resize((im.width // 3, im.height // 3), Image.BILINEAR),
    "mirror": lambda im, r: ImageOps.mirror(im),
    "mirror-half": lambda im, r: ImageOps.mirror(im).resize((im.width // 2, im.height // 2), Image.LANCZOS),
    "rotate7": lambda im, r: im.rotate(7, resample=Image.BICUBIC, expand=True, fillcolor=(255, 255, 255)),
    "rotate10-crop": lambda im, r: crop(im.rotate(-10, resample=Image.BICUBIC, expand=False), 0.85, r),
    "border": lambda im, r: ImageOps.expand(im, border=(40, 30, 40, 70), fill=(250, 250, 250)),
    "plain-bg70": lambda im, r: on_plain(im, 0.70, (255, 255, 255), (600, 600)),
    "crop-mirror-jpeg30": lambda im, r: jpeg_roundtrip(ImageOps.mirror(crop(im, 0.80, r)), 30),
    "hue-crop": lambda im, r: crop(hue_shift(im, -30), 0.75, r),
    "grey-downscale": lambda im, r: ImageOps.grayscale(im).convert("RGB").resize((im.width // 2, im.height // 2), Image.BILINEAR),
    "none": lambda im, r: im,
}


# ---------------------------------------------------------------------------
# listings
# ---------------------------------------------------------------------------

# A little seller network: several ids share contact / ship_from.
SELLERS = {
    "bestdeals88": dict(seller_name="Best Deals 88", region="CN", ship_from="Shenzhen, CN",
                        contact="wechat:bd88-sales", sold_count=15230),
    "topbrand_outlet": dict(seller_name="TopBrand Outlet", region="EU", ship_from="Shenzhen, CN",
                            contact="wechat:bd88-sales", sold_count=842),
    "luxe4less": dict(seller_name="Luxe 4 Less", region="US", ship_from="Guangzhou, CN",
                      contact="luxe4less@mailbox.example", sold_count=3120),
    "designer-finds-uk": dict(seller_name="Designer Finds", region="UK", ship_from="Guangzhou, CN",
                              contact="luxe4less@mailbox.example", sold_count=97),
    "sneakerhub_eu": dict(seller_name="SneakerHub EU", region="EU", ship_from="Rotterdam, NL",
                          contact="+31 6 5555 0101", sold_count=410),
    "watchworld": dict(seller_name="Watch World", region="US", ship_from="Miami, US",
                       contact="+1 305 555 0199", sold_count=58),
    "granny_attic": dict(seller_name="Granny's Attic", region="UK", ship_from="Leeds, UK",
                         contact="attic@mailbox.example", sold_count=12),
    "homegoods-direct": dict(seller_name="HomeGoods Direct", region="EU", ship_from="Lyon, FR",
                             contact="+33 4 5555 0142", sold_count=2301),
}


def seller_fields(sid, minimal=False):
    s = SELLERS.get(sid, {})
    if minimal:
        return {k: s[k] for k in ("seller_name",) if k in s}
    return dict(s)


# (listing_id, source image (catalog rel path) or special, edit, seller, price factor, currency override, expected)
COPIES = [
    ("L001-copy-crop", "catalog/northwind/nw-runner_1.jpg", "crop70", "bestdeals88", 0.18, None, "flag"),
    ("L002-copy-crop-hard", "catalog/acme/acme-chrono_1.jpg", "crop60", "watchworld", 0.12, None, "flag"),
    ("L003-copy-jpeg-q20", "catalog/lumen/lumen-tote_1.jpg", "jpeg20", "luxe4less", 0.20, None, "flag"),
    ("L004-copy-text-sale", "catalog/northwind/nw-trail_1.jpg", "text-sale", "topbrand_outlet", 0.20, None, "flag"),
    ("L005-copy-text-price", "catalog/acme/acme-diver_1.jpg", "text-price", "bestdeals88", 0.05, "USD", "flag"),
    ("L006-copy-hue", "catalog/lumen/lumen-clutch_1.jpg", "hue", "designer-finds-uk", 0.25, None, "flag"),
    ("L007-copy-brightness", "catalog/northwind/nw-court_1.jpg", "bright-contrast", "sneakerhub_eu", 0.28, None, "flag"),
    ("L008-copy-downscale", "catalog/acme/acme-classic_1.jpg", "downscale3", "luxe4less", 0.15, "EUR", "flag"),
    ("L009-copy-mirror", "catalog/lumen/lumen-satchel_1.jpg", "mirror-half", "topbrand_outlet", 0.22, "EUR", "flag"),
    ("L010-copy-rotate", "catalog/northwind/nw-runner_2.jpg", "rotate7", "bestdeals88", 0.16, "USD", "flag"),
    ("L011-copy-border", "catalog/acme/acme-chrono_2.jpg", "border", "watchworld", 0.10, None, "flag"),
    ("L012-copy-plain-bg", "catalog/lumen/lumen-tote_2.jpg", "plain-bg70", "luxe4less", 0.18, "USD", "flag"),
    ("L013-copy-combo", "catalog/northwind/nw-court_2.jpg", "crop-mirror-jpeg30", "bestdeals88", 0.25, None, "flag"),
    ("L014-copy-hue-crop", "catalog/lumen/lumen-satchel_2.jpg", "hue-crop", "designer-finds-uk", 0.20, None, "flag"),
    ("L015-copy-rotate-crop", "catalog/acme/acme-diver_1.jpg", "rotate10-crop", "topbrand_outlet", 0.14, "GBP", "flag"),
    ("L016-copy-grey", "catalog/northwind/nw-trail_1.jpg", "grey-downscale", "sneakerhub_eu", 0.30, None, "flag"),
    ("L017-normal-price-crop", "catalog/northwind/nw-runner_1.jpg", "crop85", "sneakerhub_eu", 0.95, None, "review"),
    ("L018-normal-price-jpeg", "catalog/acme/acme-classic_1.jpg", "jpeg40", "watchworld", 1.05, None, "review"),
    ("L019-normal-price-mirror", "catalog/lumen/lumen-clutch_1.jpg", "mirror", "granny_attic", 0.92, None, "review"),
    ("L020-authorized-low-price", "catalog/northwind/nw-court_1.jpg", "none", "northwind-official", 0.30, None, "clear"),
    ("L021-authorized-copy", "catalog/lumen/lumen-tote_1.jpg", "crop85", "lumen-boutique-uk", 0.60, None, "clear"),
]


def write_listing_image(im, lid, fmt="jpg", quality=80):
    rel = f"listings/{lid}.{fmt}"
    p = OUT / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jpg":
        im.save(p, "JPEG", quality=quality)
    elif fmt == "png":
        im.save(p, "PNG", optimize=True)
    elif fmt == "webp":
        im.save(p, "WEBP", quality=80, method=4)
    return rel


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(w=60000, h=60000, rows=4):
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)  # 8-bit greyscale
    raw = b"".join(b"\x00" + b"\x00" * w for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) +
            png_chunk(b"IDAT", zlib.compress(raw, 9)) + png_chunk(b"IEND", b""))


def build_listings(products, cat_images):
    rng = np.random.default_rng(SEED + 1)
    listings, expected = [], {}
    prod_of = {}
    for pid, p in products.items():
        for im in p["images"]:
            prod_of[im] = pid

    fmt_cycle = {"L012-copy-plain-bg": "webp", "L009-copy-mirror": "png"}
    for lid, src, edit, sid, pf, cur, exp in COPIES:
        pid = prod_of[src]
        p = products[pid]
        im = EDITS[edit](cat_images[src], rng)
        rel = write_listing_image(im, lid, fmt_cycle.get(lid, "jpg"))
        ref = float(p["price"])
        currency = cur or p["currency"]
        rate = {("EUR", "USD"): 1.08, ("EUR", "GBP"): 0.85, ("USD", "EUR"): 0.93, ("USD", "GBP"): 0.79,
                ("GBP", "EUR"): 1.17, ("GBP", "USD"): 1.27}.get((p["currency"], currency), 1.0)
        price = round(ref * pf * rate, 2)
        short = p["title"].split(" ", 1)[1]
        if exp == "flag":
            title = rng.choice([f"{p['title']} - 100% original!!", f"{p['brand']} {short} NEW factory outlet",
                                f"Cheap {p['brand']} {short} best quality", f"{p['title']} mirror edition"])
        else:
            title = p["title"]
        rec = dict(listing_id=lid, seller_id=sid, title=str(title), price=price, currency=currency, images=[rel])
        rec.update(seller_fields(sid, minimal=sid.endswith("official")))
        listings.append(rec)
        expected[lid] = dict(expected=exp, source_product=pid, source_image=src, edit=edit)

    # multi-image listing: one unrelated shot + one copy
    un_sellers = ["homegoods-direct", "granny_attic", "homegoods-direct", "sneakerhub_eu", "watchworld"]
    prices = [12.50, 9.99, 15.00, 29.90, 24.00]
    currencies = ["EUR", "GBP", "EUR", "EUR", "USD"]
    for i, (kind, brand, title, fam, pat) in enumerate(UNRELATED):
        seed = SEED + 777_000 + i * 13
        im = render_photo(seed, kind, brand, title, SIZES[(i + 2) % len(SIZES)], fam, pat)
        lid = f"L0{22 + i}-unrelated-{kind}"
        rel = write_listing_image(im, lid)
        rec = dict(listing_id=lid, seller_id=un_sellers[i], title=title, price=prices[i],
                   currency=currencies[i], images=[rel])
        rec.update(seller_fields(un_sellers[i]))
        listings.append(rec)
        expected[lid] = dict(expected="clear", source_product=None, source_image=None, edit="unrelated")

    # multi-image listing: unrelated first image + a crop of a catalog photo
    lid = "L027-multi-image-copy"
    un = Image.open(OUT / "listings/L022-unrelated-bottle.jpg").convert("RGB")
    rel1 = write_listing_image(ImageOps.mirror(un), lid + "_a")
    rel2 = write_listing_image(crop(cat_images["catalog/acme/acme-diver_1.jpg"], 0.8, rng), lid + "_b")
    rec = dict(listing_id=lid, seller_id="watchworld", title="Acme Diver 300 + free bottle",
               price=49.00, currency="USD", images=[rel1, rel2])
    rec.update(seller_fields("watchworld"))
    listings.append(rec)
    expected[lid] = dict(expected="flag", source_product="acme-diver",
                         source_image="catalog/acme/acme-diver_1.jpg", edit="crop80 (second image)")

    # copy of a product that is only in catalog_extra.jsonl
    lid = "L028-copy-extra-product"
    src = "catalog/northwind/nw-slide_1.jpg"
    rel = write_listing_image(jpeg_roundtrip(crop(cat_images[src], 0.8, rng), 40), lid)
    rec = dict(listing_id=lid, seller_id="bestdeals88", title="Northwind Pool Slide sandals original",
               price=14.99, currency="EUR", images=[rel])
    rec.update(seller_fields("bestdeals88"))
    listings.append(rec)
    expected[lid] = dict(expected="clear", expected_with_extra="flag", source_product="nw-slide",
                         source_image=src, edit="crop80+jpeg40; product only in catalog_extra.jsonl")

    # ---- bad inputs -------------------------------------------------------
    ldir = OUT / "listings"
    good_jpeg = (ldir / "L001-copy-crop.jpg").read_bytes()
    bad = []
    # missing file (never written)
    bad.append(("L029-missing-file", "listings/L029-missing-file.jpg", "file does not exist"))
    (ldir / "L030-corrupt.jpg").write_bytes(rng.integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    bad.append(("L030-corrupt", "listings/L030-corrupt.jpg", "random bytes with .jpg name"))
    (ldir / "L031-truncated.jpg").write_bytes(good_jpeg[: int(len(good_jpeg) * 0.4)])
    bad.append(("L031-truncated", "listings/L031-truncated.jpg", "first 40% of a valid JPEG"))
    (ldir / "L032-not-an-image.png").write_text("This is not an image.\nJust some text pretending to be a PNG.\n")
    bad.append(("L032-not-an-image", "listings/L032-not-an-image.png", "text file named .png"))
    (ldir / "L033-decompression-bomb.png").write_bytes(bomb_png())
    bad.append(("L033-decompression-bomb", "listings/L033-decompression-bomb.png",
                "valid PNG header claiming 60000x60000 greyscale, tiny IDAT"))
    for lid, rel, what in bad:
        rec = dict(listing_id=lid, seller_id="topbrand_outlet", title="Northwind Runner Pro cheap",
                   price=19.99, currency="EUR", images=[rel])
        rec.update(seller_fields("topbrand_outlet"))
        listings.append(rec)
        expected[lid] = dict(expected="error", source_product=None, source_image=None, edit=what)
    # bad price: valid copy image, unparseable price
    lid = "L034-bad-price"
    rel = write_listing_image(crop(cat_images["catalog/lumen/lumen-satchel_1.jpg"], 0.8, rng), lid)
    rec = dict(listing_id=lid, seller_id="luxe4less", title="Lumen Heritage Satchel", price="abc",
               currency="GBP", images=[rel])
    rec.update(seller_fields("luxe4less"))
    listings.append(rec)
    expected[lid] = dict(expected="error", source_product="lumen-satchel",
                         source_image="catalog/lumen/lumen-satchel_1.jpg", edit='price is the string "abc"')
    lid = "L035-negative-price"
    rec = dict(listing_id=lid, seller_id="designer-finds-uk", title="Lumen Evening Clutch", price=-25.0,
               currency="GBP", images=["listings/L006-copy-hue.jpg"])
    rec.update(seller_fields("designer-finds-uk"))
    listings.append(rec)
    expected[lid] = dict(expected="error", source_product="lumen-clutch",
                         source_image="catalog/lumen/lumen-clutch_1.jpg", edit="negative price")

    with open(OUT / "listings.jsonl", "w") as f:
        for r in listings:
            f.write(json.dumps(r) + "\n")
    with open(OUT / "expected.json", "w") as f:
        json.dump(expected, f, indent=2, sort_keys=True)
        f.write("\n")
    # CSV subset
    pick = ["L001-copy-crop", "L017-normal-price-crop", "L020-authorized-low-price",
            "L023-unrelated-lamp", "L027-multi-image-copy"]
    cols = ["listing_id", "seller_id", "title", "price", "currency", "images", "seller_name",
            "region", "ship_from", "contact", "sold_count"]
    with open(OUT / "listings.csv", "w", newline="") as f:
        wr = csv.writer(f, lineterminator="\n")
        wr.writerow(cols)
        for r in listings:
            if r["listing_id"] in pick:
                wr.writerow(["|".join(r[c]) if c == "images" else r.get(c, "") for c in cols])
    return listings, expected


# ---------------------------------------------------------------------------
# decoder test formats
# ---------------------------------------------------------------------------

def build_formats():
    d = OUT / "formats"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 2)
    w, h = 200, 150
    im = background(rng, w, h, palette(rng, 5), "spheres")
    dr = ImageDraw.Draw(im)
    dr.ellipse([20, 30, 90, 100], fill=(220, 40, 40), outline=(0, 0, 0), width=3)   # red disc, left
    dr.rectangle([120, 20, 185, 70], fill=(40, 60, 220))                              # blue box, top-right
    dr.polygon([(110, 140), (190, 140), (150, 85)], fill=(250, 220, 30))              # yellow triangle
    dr.text((8, 4), "TOP", font=font(14), fill=(255, 255, 255))                       # marks orientation
    im.save(d / "upright.png")
    im.save(d / "rgb.jpg", "JPEG", quality=92)
    im.convert("L").save(d / "grey.jpg", "JPEG", quality=92)
    im.convert("CMYK").save(d / "cmyk.jpg", "JPEG", quality=92)
    im.save(d / "progressive.jpg", "JPEG", quality=90, progressive=True)
    rgba = im.convert("RGBA")
    a = np.full((h, w), 255, np.uint8)
    a[:, : w // 4] = 0                    # fully transparent left quarter
    a[h // 2:, w // 2:] = 128             # half transparent bottom-right quadrant
    rgba.putalpha(Image.fromarray(a))
    rgba.save(d / "rgba.png")
    g16 = (np.asarray(im.convert("L"), np.uint16) * 257)
    Image.fromarray(g16.astype("<u2")).save(d / "grey16.png")
    pal = im.convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.save(d / "palette.gif")
    f2 = ImageOps.invert(im).convert("P", palette=Image.ADAPTIVE, colors=64)
    pal.save(d / "animated.gif", save_all=True, append_images=[f2], duration=[200, 200], loop=0)
    im.save(d / "rgb.webp", "WEBP", quality=90)
    im.save(d / "rgb.bmp")
    im.save(d / "rgb.tiff")
    # stored pixels such that applying the EXIF orientation restores `im`
    stored = {6: im.transpose(Image.ROTATE_90), 3: im.transpose(Image.ROTATE_180),
              8: im.transpose(Image.ROTATE_270)}
    for o, s in stored.items():
        ex = Image.Exif()
        ex[0x0112] = o
        s.save(d / f"exif_rot{o}.jpg", "JPEG", quality=92, exif=ex.tobytes())
        back = ImageOps.exif_transpose(Image.open(d / f"exif_rot{o}.jpg"))
        assert back.size == im.size, (o, back.size)
        diff = np.abs(np.asarray(back, np.int16) - np.asarray(im, np.int16)).mean()
        assert diff < 6, (o, diff)


def main():
    for sub in ("catalog", "listings", "formats"):
        shutil.rmtree(OUT / sub, ignore_errors=True)
    products, cat_images = build_catalog()
    build_listings(products, cat_images)
    build_formats()
    print("wrote test data to", OUT)


if __name__ == "__main__":
    main()

//! Scaling, rotation and sharpening of 8-bit grey pages, in plain Rust.
//!
//! The arithmetic is leptonica's (`pixScaleGrayLI`, `pixUnsharpMaskingGray2D`: bilinear
//! interpolation in sixteenths of a pixel, a 3×3 mean for the unsharp mask), so OCR reads the
//! same pixels: the tests hold scaling and sharpening within one grey level of leptonica.
//! Rotation (`pixRotateAMGray`'s job) is done as two interpolating shears, within a fraction
//! of a pixel of it. What differs is the cost: leptonica computes every coordinate in
//! floating point and fetches every byte through its word-swapped accessors. Scaling a
//! 300-dpi letter to 250 dpi, sharpening and straightening it took 100 ms there, a sixth of
//! what Tesseract then took to read the page; here about 35 ms.

/// An 8-bit grey image, row-major, one byte per pixel.
#[derive(Debug, Clone, PartialEq)]
pub struct Grey {
    pub width: usize,
    pub height: usize,
    pub px: Vec<u8>,
}

/// A fixed-point value (16 bits of fraction) truncated toward zero, as C's `(int)` does.
#[inline(always)]
fn trunc16(v: i64) -> i64 {
    if v >= 0 {
        v >> 16
    } else {
        -((-v) >> 16)
    }
}

/// A position split into whole pixels (floor) and sixteenths toward the next one.
fn split16(v: f64) -> (i64, u16) {
    let q = (v * 16.0).floor() as i64;
    (q.div_euclid(16), q.rem_euclid(16) as u16)
}

/// `a` and `b` mixed with `f` sixteenths of `b`, rounded.
#[inline(always)]
fn lerp16(a: u8, b: u8, f: u16) -> u8 {
    (((16 - f) * a as u16 + f * b as u16 + 8) >> 4) as u8
}

/// Bilinear weights in sixteenths, as leptonica computes them; rounded to the nearest level.
#[inline(always)]
fn blend(v00: u8, v10: u8, v01: u8, v11: u8, xf: u32, yf: u32) -> u8 {
    let v = (16 - xf) * (16 - yf) * v00 as u32
        + xf * (16 - yf) * v10 as u32
        + (16 - xf) * yf * v01 as u32
        + xf * yf * v11 as u32;
    ((v + 128) >> 8) as u8
}

impl Grey {
    /// Scaled by (sx, sy) with linear interpolation (`pixScaleGrayLI`).
    pub fn scaled(&self, sx: f32, sy: f32) -> Grey {
        let (ws, hs) = (self.width, self.height);
        let wd = ((sx * ws as f32 + 0.5) as usize).max(1);
        let hd = ((sy * hs as f32 + 0.5) as usize).max(1);
        let mut out = vec![0u8; wd * hd];
        if ws < 2 || hs < 2 {
            // Too small to interpolate: nearest pixel.
            for (i, line) in out.chunks_exact_mut(wd).enumerate() {
                for (j, d) in line.iter_mut().enumerate() {
                    *d = self.px[(i * hs / hd) * ws + j * ws / wd];
                }
            }
            return Grey {
                width: wd,
                height: hd,
                px: out,
            };
        }
        let scx = 16.0 * ws as f32 / wd as f32;
        let scy = 16.0 * hs as f32 / hd as f32;
        // Every row uses the same source columns (the right edge repeats the last one).
        let cols: Vec<(usize, u32)> = (0..wd)
            .map(|j| {
                let xpm = (scx * j as f32) as u32;
                let xp = ((xpm >> 4) as usize).min(ws - 1);
                if xp > ws - 2 {
                    (ws - 2, 16)
                } else {
                    (xp, xpm & 15)
                }
            })
            .collect();
        // Bilinear is separable and exact in integers: first between the two source rows
        // (in 16ths), then along the row.
        let mut mixed = vec![0u16; ws];
        for (i, line) in out.chunks_exact_mut(wd).enumerate() {
            let ypm = (scy * i as f32) as u32;
            let yp = ((ypm >> 4) as usize).min(hs - 1);
            let (y0, y1, yf) = if yp > hs - 2 {
                (yp, yp, 0)
            } else {
                (yp, yp + 1, (ypm & 15) as u16)
            };
            let (r0, r1) = (
                &self.px[y0 * ws..(y0 + 1) * ws],
                &self.px[y1 * ws..(y1 + 1) * ws],
            );
            for ((m, &a), &b) in mixed.iter_mut().zip(r0).zip(r1) {
                *m = (16 - yf) * a as u16 + yf * b as u16;
            }
            for (d, &(xp, xf)) in line.iter_mut().zip(&cols) {
                let pair = &mixed[xp..xp + 2];
                let v = (16 - xf) * pair[0] as u32 + xf * pair[1] as u32;
                *d = ((v + 128) >> 8) as u8;
            }
        }
        Grey {
            width: wd,
            height: hd,
            px: out,
        }
    }

    /// Rotated by `angle` radians (clockwise positive) about its centre, same size, white
    /// brought in at the corners: `pixRotateAMGray`'s rotation and its bilinear weights in
    /// sixteenths, done as two shears (columns shifted, then rows) so that each pass reads
    /// memory in order. For the small angles of a skewed scan that is a rotation to within
    /// a fraction of a pixel: it differs from one by a stretch of 1/cos(angle), 0.015% at 1°
    /// and 0.75% at 7°, the most a deskew turns. Larger angles are turned pixel by pixel.
    pub fn rotated(&self, angle: f32) -> Grey {
        let (w, h) = (self.width, self.height);
        if w < 2 || h < 2 || angle.abs() > 0.5 {
            return self.rotated_exactly(angle);
        }
        let s = (angle as f64).sin();
        let (xcen, ycen) = ((w / 2) as f64, (h / 2) as f64);
        // Pass 1, columns: mid(x, y) = src(x, y − (x − xcen)·s).
        let shifts: Vec<(i64, u16)> = (0..w).map(|j| split16(-(j as f64 - xcen) * s)).collect();
        let mut mid = vec![255u8; w * h];
        for (i, line) in mid.chunks_exact_mut(w).enumerate() {
            let mut j = 0;
            while j < w {
                // A run of columns reading the same two source rows.
                let off = shifts[j].0;
                let mut end = j + 1;
                while end < w && shifts[end].0 == off {
                    end += 1;
                }
                let y0 = i as i64 + off;
                if y0 >= 0 && y0 + 1 < h as i64 {
                    let y0 = y0 as usize;
                    let r0 = &self.px[y0 * w + j..y0 * w + end];
                    let r1 = &self.px[(y0 + 1) * w + j..(y0 + 1) * w + end];
                    for (((d, &a), &b), &(_, f)) in
                        line[j..end].iter_mut().zip(r0).zip(r1).zip(&shifts[j..end])
                    {
                        *d = lerp16(a, b, f);
                    }
                } else if y0 == h as i64 - 1 {
                    let r0 = &self.px[(h - 1) * w + j..(h - 1) * w + end];
                    line[j..end].copy_from_slice(r0);
                }
                j = end;
            }
        }
        // Pass 2, rows: out(x, y) = mid(x + (y − ycen)·s, y).
        let mut out = vec![255u8; w * h];
        for (i, (line, src)) in out.chunks_exact_mut(w).zip(mid.chunks_exact(w)).enumerate() {
            let (off, f) = split16((i as f64 - ycen) * s);
            // Columns whose two source pixels are both on the page.
            let first = (-off).clamp(0, w as i64) as usize;
            let last = (w as i64 - 1 - off).clamp(0, w as i64) as usize;
            if first >= last {
                continue;
            }
            let from = (first as i64 + off) as usize;
            let n = last - first;
            let (a, b) = (&src[from..from + n], &src[from + 1..from + n + 1]);
            for ((d, &a), &b) in line[first..last].iter_mut().zip(a).zip(b) {
                *d = lerp16(a, b, f);
            }
        }
        Grey {
            width: w,
            height: h,
            px: out,
        }
    }

    /// leptonica's rotation pixel by pixel, for angles too large for two shears.
    fn rotated_exactly(&self, angle: f32) -> Grey {
        let (w, h) = (self.width, self.height);
        if w < 2 || h < 2 {
            return self.clone();
        }
        let mut out = vec![255u8; w * h];
        let (xcen, ycen) = ((w / 2) as i64, (h / 2) as i64);
        let (wm2, hm2) = ((w - 2) as i64, (h - 2) as i64);
        // Positions in 1/16 pixel, themselves in 1/65536 (16 more bits of fraction).
        const ONE: f64 = 65536.0;
        let (sina, cosa) = (16.0 * (angle as f64).sin(), 16.0 * (angle as f64).cos());
        let (dx, dy) = ((cosa * ONE).round() as i64, (-sina * ONE).round() as i64);
        for (i, line) in out.chunks_exact_mut(w).enumerate() {
            let ydif = (ycen - i as i64) as f64;
            // Source position of column 0 (xdif = xcen), then a step per column.
            let mut x = ((-(xcen as f64) * cosa - ydif * sina) * ONE).round() as i64;
            let mut y = ((-ydif * cosa + xcen as f64 * sina) * ONE).round() as i64;
            for d in line.iter_mut() {
                // leptonica truncates toward zero, as `>> 16` does not below zero.
                let (xpm, ypm) = (trunc16(x), trunc16(y));
                x += dx;
                y += dy;
                let (xp, yp) = (xcen + (xpm >> 4), ycen + (ypm >> 4));
                if xp < 0 || yp < 0 || xp > wm2 || yp > hm2 {
                    continue;
                }
                let at = yp as usize * w + xp as usize;
                let v = &self.px[at..at + w + 2];
                let (xf, yf) = ((xpm & 15) as u32, (ypm & 15) as u32);
                *d = blend(v[0], v[1], v[w], v[w + 1], xf, yf);
            }
        }
        Grey {
            width: w,
            height: h,
            px: out,
        }
    }

    /// Sharpened by an unsharp mask of a 3×3 mean: `a + fract·(a − mean)`, the border
    /// left as it is (`pixUnsharpMaskingGray` with half-width 1).
    pub fn sharpened(&self, fract: f32) -> Grey {
        let (w, h) = (self.width, self.height);
        let mut out = self.px.clone();
        if w < 3 || h < 3 {
            return Grey {
                width: w,
                height: h,
                px: out,
            };
        }
        // Horizontal sums of three, then vertical sums of those: nine additions become two.
        let mut rows = vec![0u16; w * h];
        for (src, sums) in self.px.chunks_exact(w).zip(rows.chunks_exact_mut(w)) {
            for (s, t) in sums[1..w - 1].iter_mut().zip(src.windows(3)) {
                *s = t[0] as u16 + t[1] as u16 + t[2] as u16;
            }
        }
        // fract/9 in 1/65536: the mean's division folded into the weight.
        let k = (fract as f64 / 9.0 * 65536.0).round() as i32;
        let n = w - 2;
        for i in 1..h - 1 {
            let above = &rows[(i - 1) * w + 1..][..n];
            let here = &rows[i * w + 1..][..n];
            let below = &rows[(i + 1) * w + 1..][..n];
            let src = &self.px[i * w + 1..][..n];
            let dst = &mut out[i * w + 1..][..n];
            for j in 0..n {
                // a + fract·(a − sum/9), rounded as leptonica does, then clipped.
                let a = src[j] as i32;
                let diff = 9 * a - (above[j] + here[j] + below[j]) as i32;
                let v = (a << 16) + k * diff + 32768;
                dst[j] = (v >> 16).clamp(0, 255) as u8;
            }
        }
        Grey {
            width: w,
            height: h,
            px: out,
        }
    }
}

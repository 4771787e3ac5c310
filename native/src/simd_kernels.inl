// The SIMD kernels, written once over a small vector interface `V` and
// instantiated by each ISA's file inside its own namespace (rebatch::avx2,
// rebatch::neon), compiled with that ISA's flags only. V provides:
//   T, W (lanes), zero, set1, load, loadN (zeros past n), store, storeN,
//   pin (keeps a value in a register rather than re-loading it), prefetch (a
//   hint), kStream and stream (a non-temporal store to a W-aligned address;
//   kStream false: none, plain stores are used), fence, firstN (zero lanes
//   >= n), add, sub, mul, fma(a, b, c) = a*b + c, selectFirst(n, a, b) (lanes
//   < n from a, the rest from b), allLessEqual(a, b) (every lane a <= b; false
//   for NaN), reluOf (max with 0, NaN kept), keepWherePositive(y, v) (v where
//   !(y <= 0), else 0), hsum (in float64). Besides V, the ISA's file defines
//   invstdOf (KernelTable::invstdOf, on float64 vectors).
// Accuracy: statistics are sums of x - m and (x - m)^2 over a block, m being
// a shift kept only when verified within half a standard deviation of the
// block's mean (else the block's own mean from a first pass: the exact
// two-pass); each float32 lane sums at most kFlushFloats / W (NCHW),
// kMaxRowBlock (NHWC strips) or kRowMajorFlushRows (NHWC rows in memory
// order) terms before it is reduced in float64; blocks are merged with Chan's
// formula.
// Speed: every hot loop keeps several independent accumulators in registers
// (the add and FMA latencies, not the loads, would otherwise set the pace),
// full vectors use plain loads and stores, and masked ones only the tails;
// elementwise passes stream through memory in order.
// This file has no include guard on purpose: it is included once per ISA namespace.

using T = V::T;
constexpr std::size_t W = V::W;

inline T sum4(T a, T b, T c, T d) { return V::add(V::add(a, b), V::add(c, d)); }
// How far ahead (floats) the streaming reductions ask for data, every cache
// line of it. The hardware prefetchers alone leave these loops (a load, a
// subtraction, an add and an FMA per vector) at 60-70% of what a bare read
// loop pulls from L3 and DRAM: fewer loads fit in the out-of-order window, so
// fewer misses are in flight. Measured on the project's machine, 25 MiB from
// L3/DRAM: 1 KiB ahead on every other line (the old setting) 0.6-0.7 of the
// read loop, 16 KiB ahead on every line 1.0; 12 MiB: 0.8 -> 0.9.
constexpr std::size_t kPrefetchAhead = 4096;
// Prefetches the cache lines at p + ahead that a 4W-float step of the loops
// below will read then (one 64-byte line per 16 floats).
inline void prefetchStep(const float* p, std::size_t ahead = kPrefetchAhead) {
  for (std::size_t o = 0; o < 4 * W; o += 16) V::prefetch(p + ahead + o);
}
inline T loadK(const float* p, std::size_t k) { return k == W ? V::load(p) : V::loadN(p, k); }

// --- NCHW: runs -------------------------------------------------------------

// A span walk's side task that does nothing but have the walk prefetch
// `ahead` floats past what it reads (kPrefetchAhead: a walk in memory order).
struct NoSide {
  std::size_t ahead = kPrefetchAhead;
  void prefetch(const float* p) const { prefetchStep(p, ahead); }
  void step(std::size_t) const {}
  void finish() const {}
};

// Four chains of the shifted sums (the add and FMA latencies set the pace
// with fewer), kept in float32 over at most kFlushFloats values.
struct ShiftedAcc {
  T d0, d1, d2, d3, q0, q1, q2, q3;
  double dsum = 0, qsum = 0;
  void clear() { d0 = d1 = d2 = d3 = q0 = q1 = q2 = q3 = V::zero(); }
  void add(T a, T& d, T& q) {
    d = V::add(d, a);
    q = V::fma(a, a, q);
  }
  // Moves the float32 partial sums into the float64 totals.
  void flush() {
    dsum += V::hsum(sum4(d0, d1, d2, d3));
    qsum += V::hsum(sum4(q0, q1, q2, q3));
    clear();
  }
  // Adds the len floats at p (shifted by m). side.step(i) runs inside the
  // loop after each 4W-float step at offset i, and side.finish() once after
  // it: the pipelined training forward writes another block there (see
  // RunWriter), and the sums are the same with any side. side.prefetch(p + i)
  // asks for what the walk will read later.
  template <class Side>
  void span(const float* p, std::size_t len, T m, Side&& side) {
    std::size_t i = 0;
    for (; i + 4 * W <= len; i += 4 * W) {
      side.prefetch(p + i);
      add(V::sub(V::load(p + i), m), d0, q0);
      add(V::sub(V::load(p + i + W), m), d1, q1);
      add(V::sub(V::load(p + i + 2 * W), m), d2, q2);
      add(V::sub(V::load(p + i + 3 * W), m), d3, q3);
      side.step(i);
    }
    side.finish();
    for (; i + W <= len; i += W) add(V::sub(V::load(p + i), m), d0, q0);
    if (i < len) add(V::firstN(V::sub(V::loadN(p + i, len - i), m), len - i), d1, q1);
  }
  void span(const float* p, std::size_t len, T m) { span(p, len, m, NoSide{}); }
  // Sets the chains to the sums of the first 4W floats at p (shifted by m),
  // chain 0's on top of (d, q): what clear, the first span step and adding
  // (d, q) at the end compute, without zeroing eight registers and five vector
  // adds -- of the ~85 vector operations of a 196-float run, whose issue rate
  // bounds this walk from L1 and L2 (PERFORMANCE.md, tenth round).
  template <class Side>
  void begin(const float* p, T m, T d, T q, Side&& side) {
    side.prefetch(p);
    const T a0 = V::sub(V::load(p), m), a1 = V::sub(V::load(p + W), m);
    const T a2 = V::sub(V::load(p + 2 * W), m), a3 = V::sub(V::load(p + 3 * W), m);
    d0 = V::add(d, a0), q0 = V::fma(a0, a0, q);
    d1 = a1, q1 = V::mul(a1, a1);
    d2 = a2, q2 = V::mul(a2, a2);
    d3 = a3, q3 = V::mul(a3, a3);
  }
};

// Float32 partial sums are flushed to float64 after at most this many values,
// so each lane sums at most kFlushFloats / W terms (most chains a quarter of
// that) whatever the block size. A multiple of 4W for every ISA.
constexpr std::size_t kFlushFloats = 1024;

// Walks a block's runs in spans of at most kFlushFloats floats: span(offset,
// len) for each, flush() whenever the next span would take the float32 sums
// past kFlushFloats values, and once at the end.
template <class Span, class Flush>
inline void flushedWalk(std::size_t runLen, std::size_t runs, std::size_t stride, Span&& span, Flush&& flush) {
  std::size_t pending = 0;  // values in the float32 sums
  for (std::size_t r = 0; r < runs; ++r)
    for (std::size_t i = 0; i < runLen; i += kFlushFloats) {
      const std::size_t len = std::min(kFlushFloats, runLen - i);
      if (pending + len > kFlushFloats) flush(), pending = 0;
      span(r * stride + i, len);
      pending += len;
    }
  flush();
}

// Sums of x - m and of (x - m)^2 over the block, in float64; sideOf(o, len)
// gives the side task of the span at offset o (see ShiftedAcc::span).
template <class SideOf>
inline void shiftedSums(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride, float shift,
                        double& dsum, double& qsum, SideOf&& sideOf) {
  const T m = V::set1(shift);
  ShiftedAcc acc;
  acc.clear();
  flushedWalk(
      runLen, runs, stride, [&](std::size_t o, std::size_t len) { acc.span(x + o, len, m, sideOf(o, len)); },
      [&] { acc.flush(); });
  dsum = acc.dsum;
  qsum = acc.qsum;
}
inline NoSide noSide(std::size_t, std::size_t) { return {}; }

// runsMoments below, with sideOf's tasks run inside its first pass.
template <class SideOf>
Moments runsMomentsWith(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride, const float* hint,
                        SideOf&& sideOf) {
  const double n = double(runLen * runs);
  double dsum, qsum;
  // One pass shifted by the caller's hint (the channel's mean so far) or, for
  // a channel's first block, by the mean of its first 2W values; kept only
  // when verified close to the block's mean.
  float shift;
  if (hint) {
    shift = *hint;
  } else {
    const std::size_t k0 = std::min(runLen, W), k1 = std::min(runLen - k0, W);
    const T s = k1 ? V::add(loadK(x, k0), loadK(x + k0, k1)) : loadK(x, k0);
    shift = float(V::hsum(s) / double(k0 + k1));
  }
  shiftedSums(x, runLen, runs, stride, shift, dsum, qsum, sideOf);
  if (shiftIsClose(n, dsum, qsum)) return fromShifted(n, shift, dsum, qsum);
  // Exact two-pass: pass 1 (from memory) finds the shift, pass 2 (from L1) the sums.
  T s0 = V::zero(), s1 = s0, s2 = s0, s3 = s0;
  for (std::size_t r = 0; r < runs; ++r) {
    const float* p = x + r * stride;
    std::size_t i = 0;
    for (; i + 4 * W <= runLen; i += 4 * W) {
      s0 = V::add(s0, V::load(p + i));
      s1 = V::add(s1, V::load(p + i + W));
      s2 = V::add(s2, V::load(p + i + 2 * W));
      s3 = V::add(s3, V::load(p + i + 3 * W));
    }
    for (; i + W <= runLen; i += W) s0 = V::add(s0, V::load(p + i));
    if (i < runLen) s1 = V::add(s1, V::loadN(p + i, runLen - i));
  }
  const float approxMean = float(V::hsum(sum4(s0, s1, s2, s3)) / n);
  shiftedSums(x, runLen, runs, stride, approxMean, dsum, qsum, noSide);
  return fromShifted(n, approxMean, dsum, qsum);
}

Moments runsMoments(const float* x, std::size_t runLen, std::size_t runs, std::size_t stride, const float* hint) {
  return runsMomentsWith(x, runLen, runs, stride, hint, noSide);
}

// A run's two float32 partial sums (x - m and its square, or dy' and dy' * (x - hi)).
struct RunSums {
  T first, second;
};

// The memory-order walk of short runs shared by runSums and runGradSums:
// `samples` samples, sampleStride floats apart, each `runs` runs of runLen <=
// kFlushFloats floats back to back (its channels). spanRun(o, r, lanes) walks
// the run at offset o with channel r's parameters on top of the channel's
// lanes so far (RunSums, from scratch) and returns the new lanes, which
// replace them -- a horizontal sum per run would cost a third of the time;
// flush(r, a, b) takes the lanes' float64 totals every kFlushFloats values
// per channel.
template <class SpanRun, class Flush>
inline void runLanesWalk(std::size_t runLen, std::size_t runs, std::size_t samples, std::size_t sampleStride,
                         float* scratch, SpanRun&& spanRun, Flush&& flush, SampleHook hook = {nullptr, nullptr}) {
  const std::size_t perFlush = kFlushFloats / runLen;  // samples
  for (std::size_t s0 = 0; s0 < samples; s0 += perFlush) {
    for (std::size_t i = 0; i < 2 * W * runs; ++i) scratch[i] = 0;
    const std::size_t s1 = std::min(samples, s0 + perFlush);
    for (std::size_t s = s0; s < s1; ++s) {
      for (std::size_t r = 0; r < runs; ++r) {
        float* lanes = scratch + 2 * W * r;
        const RunSums sums = spanRun(s * sampleStride + r * runLen, r, RunSums{V::load(lanes), V::load(lanes + W)});
        V::store(lanes, sums.first);
        V::store(lanes + W, sums.second);
      }
      if (hook.after) hook.after(hook.ctx, s);
    }
    for (std::size_t r = 0; r < runs; ++r)
      flush(r, V::hsum(V::load(scratch + 2 * W * r)), V::hsum(V::load(scratch + 2 * W * r + W)));
  }
}

void runSums(const float* x, std::size_t runLen, std::size_t runs, std::size_t samples, std::size_t sampleStride,
             const float* shift, float* scratch, double* dsum, double* qsum, SampleHook hook) {
  // The next sample's same runs when they are a part of each sample (the
  // staged training forward's stages: memory kPrefetchAhead on would be the
  // next stages', read much later; 64x256x14x14 in stages of 8 channels:
  // 0.27 -> 0.18 ms), else memory kPrefetchAhead on.
  const NoSide ahead{runs * runLen < sampleStride ? sampleStride : kPrefetchAhead};
  ShiftedAcc acc;
  acc.clear();
  if (runLen > kFlushFloats) {  // long runs: each run's sums flushed on their own
    for (std::size_t s = 0; s < samples; ++s) {
      for (std::size_t r = 0; r < runs; ++r) {
        const float* p = x + s * sampleStride + r * runLen;
        const T m = V::set1(shift[r]);
        acc.dsum = dsum[r], acc.qsum = qsum[r];
        flushedWalk(runLen, 1, runLen, [&](std::size_t o, std::size_t len) { acc.span(p + o, len, m); }, [&] { acc.flush(); });
        dsum[r] = acc.dsum, qsum[r] = acc.qsum;
      }
      if (hook.after) hook.after(hook.ctx, s);
    }
    return;
  }
  runLanesWalk(
      runLen, runs, samples, sampleStride, scratch,
      [&](std::size_t o, std::size_t r, RunSums lanes) {
        const T m = V::set1(shift[r]);
        if (runLen >= 4 * W) {
          acc.begin(x + o, m, lanes.first, lanes.second, ahead);
          acc.span(x + o + 4 * W, runLen - 4 * W, m, ahead);
        } else {
          acc.clear();
          acc.d0 = lanes.first, acc.q0 = lanes.second;
          acc.span(x + o, runLen, m, ahead);
        }
        return RunSums{sum4(acc.d0, acc.d1, acc.d2, acc.d3), sum4(acc.q0, acc.q1, acc.q2, acc.q3)};
      },
      [&](std::size_t r, double d, double q) { dsum[r] += d, qsum[r] += q; }, hook);
}

// y = (x - mean) * scale + shift as fma(x - hi, scale, shift - lo * scale)
// (ChannelAffine::foldedShift): the float hi/lo split of the mean keeps
// x - mean accurate, and the tiny lo part moves into the shift, so each
// vector costs one subtraction and one FMA.

template <bool Relu>
inline T affine(T x, T hi, T s, T b) {
  const T v = V::fma(V::sub(x, hi), s, b);
  return Relu ? V::reluOf(v) : v;
}

template <bool Stream>
inline void put(float* p, T v) {
  if (Stream && V::kStream) V::stream(p, v);
  else V::store(p, v);
}

// Writes the W-float vectors f(i) to out[i, i + W) for i over [0, len), with
// plain stores, or when Stream with non-temporal ones (the first few floats
// until out is aligned go through a masked store). f(i, k) reads k <= W floats.
template <bool Stream, class F>
inline void storeSpan(float* out, std::size_t len, F&& f) {
  std::size_t i = 0;
  if (Stream && V::kStream) {
    const std::size_t mis = (reinterpret_cast<std::uintptr_t>(out) / sizeof(float)) % W;
    if (mis) {
      const std::size_t head = std::min(len, W - mis);
      V::storeN(out, f(0, head), head);
      i = head;
    }
    for (; i + 2 * W <= len; i += 2 * W) {
      const T u = f(i, W), v = f(i + W, W);
      V::stream(out + i, u);
      V::stream(out + i + W, v);
    }
    for (; i + W <= len; i += W) V::stream(out + i, f(i, W));
  } else {
    for (; i + 2 * W <= len; i += 2 * W) {
      const T u = f(i, W), v = f(i + W, W);
      V::store(out + i, u);
      V::store(out + i + W, v);
    }
    for (; i + W <= len; i += W) V::store(out + i, f(i, W));
  }
  if (i < len) V::storeN(out + i, f(i, len - i), len - i);
}

// Writes a span of `runs` whole runs of L floats, run r using
// make(params[(c0 + r) % c]): eval(i, k, q) is the vector of k <= W floats at
// offset i computed with run parameters q. Vectors are placed from the first
// W-aligned output address (Node's buffers start 16 bytes into a line: placed
// from the span's start, every other vector split a line; 16x16x8x8 NCHW eval
// and backward 12% faster so), so one may straddle two runs: its lanes are
// taken from each run's result (selectFirst). Needs L >= W.
template <class Make, class Eval>
struct RunsWalk {
  float* out;
  std::size_t L, runs, c;
  Make& make;
  Eval& eval;
  std::size_t i, r, ch;
  decltype(make(0)) q;

  // Writes the vectors wholly before `limit` (a vector boundary, or the end),
  // run after run, with non-temporal stores when S.
  template <bool S>
  void to(std::size_t limit) {
    for (;;) {
      const std::size_t end = (r + 1) * L, stop = std::min(end, limit);
      for (; i + 2 * W <= stop; i += 2 * W) {
        const T u = eval(i, W, q), v = eval(i + W, W, q);
        put<S>(out + i, u);
        put<S>(out + i + W, v);
      }
      for (; i + W <= stop; i += W) put<S>(out + i, eval(i, W, q));
      if (i + W > limit || r + 1 == runs) return;
      if (++ch == c) ch = 0;
      const auto next = make(ch);
      if (i < end) {  // straddles runs r and r + 1 (which has L >= W floats)
        put<S>(out + i, V::selectFirst(end - i, eval(i, W, q), eval(i, W, next)));
        i += W;
      }
      q = next, ++r;
    }
  }
};

template <bool Stream, class P, class Make, class Eval>
inline void spanRuns(float* out, std::size_t L, std::size_t runs, const P* params, std::size_t c0, std::size_t c,
                     Make&& make, Eval&& eval) {
  (void)params;
  const std::size_t total = L * runs;
  RunsWalk<Make, Eval> w{out, L, runs, c, make, eval, 0, 0, c0, make(c0)};
  const std::size_t head = phaseOf(out), mis = head % W;
  if (mis && total >= W) {  // vectors from the first aligned output float on (a masked store before)
    w.i = W - mis;  // < W <= L: inside run 0
    V::storeN(out, eval(0, w.i, w.q), w.i);
  }
  if (Stream && V::kStream) {
    // Only whole cache lines are streamed: a partly written line goes to
    // memory as a partial write, far slower than a plain store's
    // read-for-ownership (the staged training forward writes pieces of a
    // few runs at any alignment; streaming every vector there measured 35%
    // slower overall).
    const std::size_t lineFrom = std::min(total, head ? kLineFloats - head : 0);
    const std::size_t lineTo = std::max(lineFrom, total - phaseOf(out + total));
    w.template to<false>(lineFrom);
    w.template to<true>(lineTo);
  }
  w.template to<false>(total);
  if (w.i < total) V::storeN(out + w.i, eval(w.i, total - w.i, w.q), total - w.i);
}

struct AffineV {
  T hi, s, b;
};

template <bool Relu, bool Stream>
void spanNormalizeT(const float* x, float* y, std::size_t runLen, std::size_t runs, const ChannelAffine* p,
                    std::size_t c0, std::size_t c) {
  spanRuns<Stream>(
      y, runLen, runs, p, c0, c,
      [&](std::size_t ch) { return AffineV{V::set1(p[ch].meanHi), V::set1(p[ch].scale), V::set1(p[ch].foldedShift)}; },
      [&](std::size_t i, std::size_t k, const AffineV& a) { return affine<Relu>(loadK(x + i, k), a.hi, a.s, a.b); });
}

void spanNormalize(const float* x, float* y, std::size_t runLen, std::size_t runs, const ChannelAffine* p,
                   std::size_t c0, std::size_t c, bool relu, bool stream) {
  if (runLen < W) {  // runs shorter than a vector: one at a time, plain masked stores
    for (std::size_t r = 0, ch = c0; r < runs; ++r, ch = ch + 1 == c ? 0 : ch + 1) {
      const std::size_t o = r * runLen;
      const T hi = V::set1(p[ch].meanHi), s = V::set1(p[ch].scale), b = V::set1(p[ch].foldedShift);
      const T v = V::fma(V::sub(V::loadN(x + o, runLen), hi), s, b);
      V::storeN(y + o, relu ? V::reluOf(v) : v, runLen);
    }
    return;
  }
  if (stream) {
    if (relu) spanNormalizeT<true, true>(x, y, runLen, runs, p, c0, c);
    else spanNormalizeT<false, true>(x, y, runLen, runs, p, c0, c);
  } else {
    if (relu) spanNormalizeT<true, false>(x, y, runLen, runs, p, c0, c);
    else spanNormalizeT<false, false>(x, y, runLen, runs, p, c0, c);
  }
}

// --- NCHW: the pipelined training forward -----------------------------------

// Writes one run's lineWindow (kernels.h) a few vectors at a time, as the
// side task of a streaming reduction (ShiftedAcc::span): non-temporal stores
// to whole lines, so the output does not evict from L2 the slice the pipeline
// reads back; plain ones only for the partial lines at exact edges.
template <bool Relu>
struct RunWriter {
  AffineV own, before;
  const float* x;  // the run's first float (floats before it belong to `before`)
  float* y;
  std::ptrdiff_t at, linesEnd, end;  // [at, linesEnd): whole lines left; [linesEnd, end): the partial one

  RunWriter(const AffineV& own_, const AffineV& before_) : own(own_), before(before_) {}

  T value(std::ptrdiff_t i, std::size_t k, const AffineV& a) const { return affine<Relu>(loadK(x + i, k), a.hi, a.s, a.b); }
  T value(std::ptrdiff_t i) const {  // W floats from i
    if (i >= 0) return value(i, W, own);
    const T b = value(i, W, before);
    return i + std::ptrdiff_t(W) <= 0 ? b : V::selectFirst(std::size_t(-i), b, value(i, W, own));
  }
  void begin(const float* xr, float* yr, std::size_t runLen, unsigned edges) {
    x = xr, y = yr;
    const RunWindow w = lineWindow(yr, runLen, edges);
    at = w.begin, end = w.end;
    linesEnd = end - std::ptrdiff_t(phaseOf(yr + end));
    if (edges & kExactHead) {  // the plain head up to the first line boundary
      const std::size_t into = phaseOf(yr);
      const std::size_t head = into ? std::min<std::size_t>(kLineFloats - into, std::size_t(end)) : 0;
      storeSpan<false>(yr, head, [&](std::size_t i, std::size_t k) { return value(std::ptrdiff_t(i), k, own); });
      at = std::ptrdiff_t(head);
    }
    if (linesEnd < at) linesEnd = at;
    for (; at < 0 && at + std::ptrdiff_t(W) <= linesEnd; at += W) put<true>(y + at, value(at));  // the straddled line
  }
  void step() {
    if (at + std::ptrdiff_t(4 * W) > linesEnd) return;
    const T u0 = value(at, W, own), u1 = value(at + W, W, own), u2 = value(at + 2 * W, W, own), u3 = value(at + 3 * W, W, own);
    put<true>(y + at, u0);
    put<true>(y + at + W, u1);
    put<true>(y + at + 2 * W, u2);
    put<true>(y + at + 3 * W, u3);
    at += 4 * W;
  }
  void complete() {
    for (; at < linesEnd; at += W) put<true>(y + at, value(at));  // W divides kLineFloats
    storeSpan<false>(y + at, std::size_t(end - at),
                     [&](std::size_t i, std::size_t k) { return value(at + std::ptrdiff_t(i), k, own); });
    at = end;
  }
};

// The side task of one span of a pipelined block: steps its run's writer, and
// completes it with the run's last span. The walk's order is channel after
// channel, not memory order, so it prefetches the next block's lines, the same
// offset ahead of each read.
template <bool Relu>
struct RunWriterSide {
  RunWriter<Relu>& w;
  std::ptrdiff_t toNext;  // 0: nothing to prefetch
  bool runEnds;
  void prefetch(const float* p) const {
    if (toNext)
      for (std::size_t o = 0; o < 4 * W; o += 16) V::prefetch(p + toNext + o);
  }
  void step(std::size_t) { w.step(); }
  void finish() {
    if (runEnds) w.complete();
  }
};

template <bool Relu>
Moments runsMomentsNormalizingT(const float* xs, std::size_t runLen, std::size_t runs, std::size_t stride,
                                const float* hint, const float* next, const float* xn, float* y,
                                const ChannelAffine* p, unsigned edges) {
  const auto affineV = [](const ChannelAffine& a) {
    return AffineV{V::set1(a.meanHi), V::set1(a.scale), V::set1(a.foldedShift)};
  };
  RunWriter<Relu> w(affineV(p[1]), affineV(p[0]));
  if (!xs) {
    for (std::size_t r = 0; r < runs; ++r) {
      w.begin(xn + r * stride, y + r * stride, runLen, edges);
      w.complete();
    }
    return {};
  }
  const std::ptrdiff_t toNext = next ? next - xs : 0;
  std::size_t run = 0;  // the offset of the run being walked (the walk takes them in order)
  return runsMomentsWith(xs, runLen, runs, stride, hint, [&](std::size_t o, std::size_t len) {
    if (o >= run + runLen) run += stride;
    if (o == run) w.begin(xn + run, y + run, runLen, edges);
    return RunWriterSide<Relu>{w, toNext, o + len == run + runLen};
  });
}

Moments runsMomentsNormalizing(const float* xs, std::size_t runLen, std::size_t runs, std::size_t stride,
                               const float* hint, const float* next, const float* xn, float* y,
                               const ChannelAffine* p, unsigned edges, bool relu) {
  return relu ? runsMomentsNormalizingT<true>(xs, runLen, runs, stride, hint, next, xn, y, p, edges)
              : runsMomentsNormalizingT<false>(xs, runLen, runs, stride, hint, next, xn, y, p, edges);
}

// Upstream gradient after the fused ReLU: zero where the forward output
// (x - hi) * s + b, with b the folded shift, was <= 0.
template <bool Relu>
inline T maskedDy(T dy, T xc, T s, T b) {
  return Relu ? V::keepWherePositive(V::fma(xc, s, b), dy) : dy;
}

// Sums of dy' (the ReLU-masked dy) and dy' * (x - hi): four product chains
// (FMA latency), two sum chains -- few enough registers that each dy is
// loaded once -- kept in float32 over at most kFlushFloats values. No
// software prefetch in memory order: with it (16 KiB ahead) the backward
// measured 10-15% slower on tensors up to 2 MiB and the sums 9% slower at
// 8x32x112x112; only 32x64x56x56, from DRAM, gained (2-3%). The staged
// backward's stages ask for the next sample's piece (runGradSums).
template <bool Relu>
struct GradAcc {
  T hi, s, b;
  T g0, g1, h0, h1, h2, h3;
  double g = 0, h = 0;
  void clear() { g0 = g1 = h0 = h1 = h2 = h3 = V::zero(); }
  void setChannel(const ChannelAffine& p) { hi = V::set1(p.meanHi), s = V::set1(p.scale), b = V::set1(p.foldedShift); }
  void flush() {
    g += V::hsum(V::add(g0, g1));
    h += V::hsum(sum4(h0, h1, h2, h3));
    clear();
  }
  // ahead: 0, or how far past what it reads to prefetch both tensors.
  void span(const float* ds, const float* xs, std::size_t len, std::size_t ahead) {
    std::size_t i = 0;
    for (; i + 4 * W <= len; i += 4 * W) {
      if (ahead) prefetchStep(ds + i, ahead), prefetchStep(xs + i, ahead);
      const T xa = V::sub(V::load(xs + i), hi), xb = V::sub(V::load(xs + i + W), hi);
      const T xc = V::sub(V::load(xs + i + 2 * W), hi), xd = V::sub(V::load(xs + i + 3 * W), hi);
      const T ga = V::pin(maskedDy<Relu>(V::load(ds + i), xa, s, b));
      const T gb = V::pin(maskedDy<Relu>(V::load(ds + i + W), xb, s, b));
      const T gc = V::pin(maskedDy<Relu>(V::load(ds + i + 2 * W), xc, s, b));
      const T gd = V::pin(maskedDy<Relu>(V::load(ds + i + 3 * W), xd, s, b));
      h0 = V::fma(ga, xa, h0);
      h1 = V::fma(gb, xb, h1);
      h2 = V::fma(gc, xc, h2);
      h3 = V::fma(gd, xd, h3);
      g0 = V::add(g0, V::add(ga, gc));
      g1 = V::add(g1, V::add(gb, gd));
    }
    for (; i + W <= len; i += W) {
      const T xa = V::sub(V::load(xs + i), hi);
      const T ga = maskedDy<Relu>(V::load(ds + i), xa, s, b);
      g0 = V::add(g0, ga);
      h0 = V::fma(ga, xa, h0);
    }
    if (i < len) {  // loadN zeros dy past the end, so those lanes add nothing
      const std::size_t k = len - i;
      const T xa = V::sub(V::loadN(xs + i, k), hi);
      const T ga = maskedDy<Relu>(V::loadN(ds + i, k), xa, s, b);
      g1 = V::add(g1, ga);
      h1 = V::fma(ga, xa, h1);
    }
  }
};

// The sums run over x - hi; sum(dy * (x - mean)) = sum(dy * (x - hi)) - lo * sum(dy),
// applied in float64.
template <bool Relu>
GradSums runsGradSumsT(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                       std::size_t stride, ChannelAffine p) {
  GradAcc<Relu> acc;
  acc.setChannel(p);
  acc.clear();
  flushedWalk(
      runLen, runs, stride, [&](std::size_t o, std::size_t len) { acc.span(dy + o, x + o, len, 0); },
      [&] { acc.flush(); });
  return {acc.g, acc.h - double(p.meanLo) * acc.g};
}

GradSums runsGradSums(const float* dy, const float* x, std::size_t runLen, std::size_t runs,
                      std::size_t stride, ChannelAffine p, bool relu) {
  return relu ? runsGradSumsT<true>(dy, x, runLen, runs, stride, p)
              : runsGradSumsT<false>(dy, x, runLen, runs, stride, p);
}

template <bool Relu>
void runGradSumsT(const float* dy, const float* x, std::size_t runLen, std::size_t runs, std::size_t samples,
                  std::size_t sampleStride, const ChannelAffine* p, float* scratch, GradSums* sums, SampleHook hook) {
  GradAcc<Relu> acc;
  acc.clear();
  // In memory order no software prefetch (10-15% slower with it on tensors up
  // to 2 MiB); runs that are a part of each sample (the staged backward's
  // stages) ask for the next sample's.
  const std::size_t ahead = runs * runLen < sampleStride ? sampleStride : 0;
  runLanesWalk(
      runLen, runs, samples, sampleStride, scratch,
      [&](std::size_t o, std::size_t r, RunSums lanes) {
        acc.setChannel(p[r]);
        acc.g0 = lanes.first, acc.h0 = lanes.second;
        acc.span(dy + o, x + o, runLen, ahead);
        const RunSums s{V::add(acc.g0, acc.g1), sum4(acc.h0, acc.h1, acc.h2, acc.h3)};
        acc.clear();
        return s;
      },
      [&](std::size_t r, double g, double h) {
        sums[r].sumDy += g;
        sums[r].sumDyXc += h - double(p[r].meanLo) * g;
      },
      hook);
}

void runGradSums(const float* dy, const float* x, std::size_t runLen, std::size_t runs, std::size_t samples,
                 std::size_t sampleStride, const ChannelAffine* p, bool relu, float* scratch, GradSums* sums,
                 SampleHook hook) {
  if (relu) runGradSumsT<true>(dy, x, runLen, runs, samples, sampleStride, p, scratch, sums, hook);
  else runGradSumsT<false>(dy, x, runLen, runs, samples, sampleStride, p, scratch, sums, hook);
}

// dx = ga * dy' + gb * (x - mean) + gc = ga * dy' + gb * (x - hi) + (gc - gb * lo) (ChannelGrad::foldedC).

template <bool Relu>
inline T gradOut(T dy, T x, T hi, T s, T b, T ga, T gb, T gc) {
  const T xc = V::sub(x, hi);
  return V::fma(ga, maskedDy<Relu>(dy, xc, s, b), V::fma(gb, xc, gc));
}

struct GradV {
  T hi, s, b, ga, gb, gc;
};

template <bool Relu, bool Stream>
void spanGradApplyT(const float* dy, const float* x, float* dx, std::size_t runLen, std::size_t runs,
                    const ChannelAffine* p, const ChannelGrad* g, std::size_t c0, std::size_t c) {
  spanRuns<Stream>(
      dx, runLen, runs, p, c0, c,
      [&](std::size_t ch) {
        return GradV{V::set1(p[ch].meanHi), V::set1(p[ch].scale), V::set1(p[ch].foldedShift),
                     V::set1(g[ch].a),      V::set1(g[ch].b),     V::set1(g[ch].foldedC)};
      },
      [&](std::size_t i, std::size_t k, const GradV& a) {
        return gradOut<Relu>(loadK(dy + i, k), loadK(x + i, k), a.hi, a.s, a.b, a.ga, a.gb, a.gc);
      });
}

void spanGradApply(const float* dy, const float* x, float* dx, std::size_t runLen, std::size_t runs,
                   const ChannelAffine* p, const ChannelGrad* g, std::size_t c0, std::size_t c, bool relu,
                   bool stream) {
  if (runLen < W) {  // runs shorter than a vector: one at a time, plain masked stores
    for (std::size_t r = 0, ch = c0; r < runs; ++r, ch = ch + 1 == c ? 0 : ch + 1) {
      const std::size_t o = r * runLen;
      const T hi = V::set1(p[ch].meanHi), s = V::set1(p[ch].scale), b = V::set1(p[ch].foldedShift);
      const T ga = V::set1(g[ch].a), gb = V::set1(g[ch].b), gc = V::set1(g[ch].foldedC);
      const T dv = V::loadN(dy + o, runLen), xv = V::loadN(x + o, runLen);
      V::storeN(dx + o, relu ? gradOut<true>(dv, xv, hi, s, b, ga, gb, gc) : gradOut<false>(dv, xv, hi, s, b, ga, gb, gc),
                runLen);
    }
    return;
  }
  if (stream) {
    if (relu) spanGradApplyT<true, true>(dy, x, dx, runLen, runs, p, g, c0, c);
    else spanGradApplyT<false, true>(dy, x, dx, runLen, runs, p, g, c0, c);
  } else {
    if (relu) spanGradApplyT<true, false>(dy, x, dx, runLen, runs, p, g, c0, c);
    else spanGradApplyT<false, false>(dy, x, dx, runLen, runs, p, g, c0, c);
  }
}

// --- NHWC: rows of c channels, vectors across channels ------------------------
//
// The reductions walk a block column strip by column strip: K vectors of
// channels, U rows at a time, so every accumulator stays in a register (a row
// loop that adds into memory would wait on store-to-load forwarding instead).
// Full strips use K = 4, U = 1; then pairs of vectors K = 2, U = 2 (measured
// 10-20% faster than two strips of K = 1 at C = 16 and 24, even at 32-48);
// the leftover full vector K = 1, U = 4; the last c % W channels one masked
// vector.

// Loads vector k of row r of the strip starting at channel ch; masked when Tail.
template <bool Tail>
inline T rowLoad(const float* p, std::size_t tail) {
  return Tail ? V::loadN(p, tail) : V::load(p);
}

template <std::size_t K>
inline void prefetchNextStrip(const float* x, std::size_t r, std::size_t rows, std::size_t c, std::size_t ch) {
  const float* p = x + r * c + (ch + K * W < c ? ch + K * W : rows * c);
  V::prefetch(p);
  if (K * W > 16) V::prefetch(p + 16);
}

template <std::size_t K, std::size_t U, bool Tail>
struct Strip {
  const float* x;
  std::size_t rows, c, ch, tail;
  T d[K], q[K];

  T at(std::size_t r, std::size_t k) const { return rowLoad<Tail>(x + r * c + ch + k * W, tail); }
  // Asks for row r of the next strip (of the next block after the last strip),
  // one strip ahead: the strips of a block are re-walked from memory otherwise.
  void ahead(std::size_t r) const { prefetchNextStrip<K>(x, r, rows, c, ch); }

  // Sums of x - m and (x - m)^2 per lane, U rows at a time (independent chains).
  void shiftedSums(const T* m) {
    T dd[U][K], qq[U][K];
    for (std::size_t u = 0; u < U; ++u)
      for (std::size_t k = 0; k < K; ++k) dd[u][k] = qq[u][k] = V::zero();
    std::size_t r = 0;
    for (; r + U <= rows; r += U)
      for (std::size_t u = 0; u < U; ++u) {
        ahead(r + u);
        for (std::size_t k = 0; k < K; ++k) {
          const T a = V::sub(at(r + u, k), m[k]);
          dd[u][k] = V::add(dd[u][k], a);
          qq[u][k] = V::fma(a, a, qq[u][k]);
        }
      }
    for (; r < rows; ++r)
      for (std::size_t k = 0; k < K; ++k) {
        const T a = V::sub(at(r, k), m[k]);
        dd[0][k] = V::add(dd[0][k], a);
        qq[0][k] = V::fma(a, a, qq[0][k]);
      }
    for (std::size_t k = 0; k < K; ++k) {
      d[k] = dd[0][k], q[k] = qq[0][k];
      for (std::size_t u = 1; u < U; ++u) d[k] = V::add(d[k], dd[u][k]), q[k] = V::add(q[k], qq[u][k]);
    }
  }

  // The per-lane mean, for the two-pass shift.
  void means(T invRows, T* m) const {
    T s[U][K];
    for (std::size_t u = 0; u < U; ++u)
      for (std::size_t k = 0; k < K; ++k) s[u][k] = V::zero();
    std::size_t r = 0;
    for (; r + U <= rows; r += U)
      for (std::size_t u = 0; u < U; ++u) {
        ahead(r + u);
        for (std::size_t k = 0; k < K; ++k) s[u][k] = V::add(s[u][k], at(r + u, k));
      }
    for (; r < rows; ++r)
      for (std::size_t k = 0; k < K; ++k) s[0][k] = V::add(s[0][k], at(r, k));
    for (std::size_t k = 0; k < K; ++k) {
      T t = s[0][k];
      for (std::size_t u = 1; u < U; ++u) t = V::add(t, s[u][k]);
      m[k] = V::mul(t, invRows);
    }
  }

  // One pass shifted by hint, unchecked (the caller checks a whole call's sums).
  void sumsShiftedBy(const float* hint, float* dsum, float* qsum) {
    T m[K];
    for (std::size_t k = 0; k < K; ++k) m[k] = rowLoad<Tail>(hint + ch + k * W, tail);
    shiftedSums(m);
    store(dsum, d), store(qsum, q);
  }

  void store(float* out, const T* v) const {
    for (std::size_t k = 0; k < K; ++k) {
      if (Tail) V::storeN(out + ch + k * W, v[k], tail);
      else V::store(out + ch + k * W, v[k]);
    }
  }

  // Exact two-pass per channel; or, given the channels' means so far, one
  // pass shifted by them, kept when every lane passes shiftIsClose. Past the
  // tail the loads are zero: those lanes are never stored.
  void run(const float* hint, T invRows, float* shiftOut, float* dsum, float* qsum) {
    T m[K];
    bool done = false;
    if (hint) {
      for (std::size_t k = 0; k < K; ++k) m[k] = rowLoad<Tail>(hint + ch + k * W, tail);
      shiftedSums(m);
      const T five = V::set1(5.0f), n = V::set1(float(rows));
      done = true;
      for (std::size_t k = 0; k < K; ++k) done = done && V::allLessEqual(V::mul(five, V::mul(d[k], d[k])), V::mul(n, q[k]));
    }
    if (!done) {
      means(invRows, m);
      shiftedSums(m);
    }
    store(shiftOut, m), store(dsum, d), store(qsum, q);
  }
};

template <std::size_t K, std::size_t U, bool Tail>
inline void stripSums(const float* x, std::size_t rows, std::size_t c, std::size_t ch, std::size_t tail,
                      const float* hint, float* dsum, float* qsum) {
  Strip<K, U, Tail>{x, rows, c, ch, tail, {}, {}}.sumsShiftedBy(hint, dsum, qsum);
}

template <std::size_t K, std::size_t U, bool Tail>
inline void stripMoments(const float* x, std::size_t rows, std::size_t c, std::size_t ch, std::size_t tail,
                         const float* hint, T invRows, float* shift, float* dsum, float* qsum) {
  Strip<K, U, Tail>{x, rows, c, ch, tail, {}, {}}.run(hint, invRows, shift, dsum, qsum);
}

// Wide rows of whole vectors (at least 8 vectors) are reduced in memory order
// (the backward's sums; moments once a shift is known), with the per-lane
// float sums in scratch (2c floats, in L1): each sum is revisited only a row
// later, so store-to-load forwarding does not stall, and memory is read as one
// sequential stream per tensor -- measured 20-30% faster than the strips
// (which re-walk a block strip by strip) from 256 channels, as fast at 64.
inline bool rowMajor(std::size_t c) { return c % W == 0 && c >= 8 * W; }
// Rows per float64 flush of the row-major sums: each float32 lane then sums
// 128 values (sixteen sums of eight rows), no more than an NCHW lane
// (kFlushFloats / W: 128 with AVX2, 256 with NEON). The strips, which re-read
// a block from L1, keep kMaxRowBlock. Flushing every 64 rows made the
// moments of 64x256x14x14 channels-last 4-9% slower.
constexpr std::size_t kRowMajorFlushRows = 2 * kMaxRowBlock;

// The one-pass shifted sums of at most kRowMajorFlushRows rows in memory order,
// eight rows at a time (each lane's sums are loaded and stored once per eight
// rows), into dsum and qsum (float32 lanes in L1).
void rowMajorShiftedSums(const float* x, std::size_t rows, std::size_t c, const float* shift, float* dsum,
                         float* qsum) {
  for (std::size_t i = 0; i < c; ++i) dsum[i] = qsum[i] = 0;
  std::size_t r = 0;
  for (; r + 8 <= rows; r += 8) {
    const float* p = x + r * c;
    for (std::size_t ch = 0; ch < c; ch += W) {
      // Each line kPrefetchAhead ahead, as the loop reaches it: one burst per
      // eight rows measured 25-35% slower (64x256x14x14 0.23 -> 0.17 ms,
      // 32x64x56x56 0.42 -> 0.35 ms).
      if (ch % 16 == 0)
        for (std::size_t u = 0; u < 8; ++u) V::prefetch(p + kPrefetchAhead + u * c + ch);
      const T m = V::load(shift + ch);
      const T a0 = V::sub(V::load(p + ch), m), a1 = V::sub(V::load(p + c + ch), m);
      const T a2 = V::sub(V::load(p + 2 * c + ch), m), a3 = V::sub(V::load(p + 3 * c + ch), m);
      const T a4 = V::sub(V::load(p + 4 * c + ch), m), a5 = V::sub(V::load(p + 5 * c + ch), m);
      const T a6 = V::sub(V::load(p + 6 * c + ch), m), a7 = V::sub(V::load(p + 7 * c + ch), m);
      V::store(dsum + ch, V::add(V::load(dsum + ch), V::add(sum4(a0, a1, a2, a3), sum4(a4, a5, a6, a7))));
      const T qa = V::fma(a3, a3, V::fma(a2, a2, V::fma(a1, a1, V::mul(a0, a0))));
      const T qb = V::fma(a7, a7, V::fma(a6, a6, V::fma(a5, a5, V::mul(a4, a4))));
      V::store(qsum + ch, V::add(V::load(qsum + ch), V::add(qa, qb)));
    }
  }
  for (; r < rows; ++r)
    for (std::size_t ch = 0; ch < c; ch += W) {
      const T a = V::sub(V::load(x + r * c + ch), V::load(shift + ch));
      V::store(dsum + ch, V::add(V::load(dsum + ch), a));
      V::store(qsum + ch, V::fma(a, a, V::load(qsum + ch)));
    }
}

// Chan's merge of a block's moments (nb values per channel, from its sums
// shifted by shift[i]) into the running moments of `count` earlier values.
template <class S>
void mergeShifted(std::size_t c, double nb, const float* shift, const S* dsum, const S* qsum, double count,
                  double* mean, double* m2) {
  const double inv = 1.0 / nb, n = count + nb, wb = nb / n, wab = count * wb;
  if (count == 0) {
    for (std::size_t i = 0; i < c; ++i) {
      const double d = double(dsum[i]), q = double(qsum[i]) - d * d * inv;
      mean[i] = double(shift[i]) + d * inv, m2[i] = q > 0 ? q : 0;
    }
    return;
  }
  for (std::size_t i = 0; i < c; ++i) {
    const double d = double(dsum[i]), q = double(qsum[i]) - d * d * inv;
    const double delta = double(shift[i]) + d * inv - mean[i];
    mean[i] += delta * wb, m2[i] += (q > 0 ? q : 0) + delta * delta * wab;
  }
}

// One block of at most kMaxRowBlock rows, strip by strip, merged (Chan) into
// the running moments.
void stripBlockMoments(const float* x, std::size_t rows, std::size_t c, float* scratch, double count, double* mean,
                       double* m2) {
  float* shift = scratch;
  float* dsum = scratch + c;
  float* qsum = scratch + 2 * c;
  float* hint = nullptr;
  if (count > 0) {  // the means so far, as the shift to try
    hint = scratch + 3 * c;
    for (std::size_t i = 0; i < c; ++i) hint[i] = float(mean[i]);
  }
  const T invRows = V::set1(float(1.0 / double(rows)));
  std::size_t ch = 0;
  for (; ch + 4 * W <= c; ch += 4 * W) stripMoments<4, 1, false>(x, rows, c, ch, 0, hint, invRows, shift, dsum, qsum);
  for (; ch + 2 * W <= c; ch += 2 * W) stripMoments<2, 2, false>(x, rows, c, ch, 0, hint, invRows, shift, dsum, qsum);
  for (; ch + W <= c; ch += W) stripMoments<1, 4, false>(x, rows, c, ch, 0, hint, invRows, shift, dsum, qsum);
  if (ch < c) stripMoments<1, 1, true>(x, rows, c, ch, c - ch, hint, invRows, shift, dsum, qsum);
  mergeShifted(c, double(rows), shift, dsum, qsum, count, mean, m2);
}

// The one-pass shifted sums of at most kMaxRowBlock rows strip by strip.
void stripShiftedSums(const float* x, std::size_t rows, std::size_t c, const float* shift, float* dsum,
                      float* qsum) {
  std::size_t ch = 0;
  for (; ch + 4 * W <= c; ch += 4 * W) stripSums<4, 1, false>(x, rows, c, ch, 0, shift, dsum, qsum);
  for (; ch + 2 * W <= c; ch += 2 * W) stripSums<2, 2, false>(x, rows, c, ch, 0, shift, dsum, qsum);
  for (; ch + W <= c; ch += W) stripSums<1, 4, false>(x, rows, c, ch, 0, shift, dsum, qsum);
  if (ch < c) stripSums<1, 1, true>(x, rows, c, ch, c - ch, shift, dsum, qsum);
}

// The one-pass shifted sums of at most kRowMajorFlushRows rows in memory
// order for wide rows, else of at most kMaxRowBlock rows strip by strip.
void rowsShiftedSums(const float* x, std::size_t rows, std::size_t c, const float* shift, float* dsum, float* qsum) {
  if (rowMajor(c)) rowMajorShiftedSums(x, rows, c, shift, dsum, qsum);
  else stripShiftedSums(x, rows, c, shift, dsum, qsum);
}

// One pass over the rows shifted by scratch[0, c) (in memory order for wide
// rows, else strip by strip), float32 lanes flushed to float64 every
// kRowMajorFlushRows or kMaxRowBlock rows, kept when every channel passes
// shiftIsClose over all the rows (then merged into the `count` rows so far,
// true); else false, the shift replaced by the rows' means as the pass's sums
// estimate them. One check and one merge per call rather than per block: the
// merge's float64 work per channel was a fifth of the moments of 32 channels.
bool shiftedMoments(const float* x, std::size_t rows, std::size_t c, float* scratch, double count, double* mean,
                    double* m2) {
  float* shift = scratch;
  float* dsum = scratch + c;
  float* qsum = scratch + 2 * c;
  double* dsumD = reinterpret_cast<double*>(scratch + 4 * c);  // 16c bytes in: as aligned as scratch
  double* qsumD = dsumD + c;
  for (std::size_t i = 0; i < c; ++i) dsumD[i] = qsumD[i] = 0;
  const std::size_t flushRows = rowMajor(c) ? kRowMajorFlushRows : kMaxRowBlock;
  for (std::size_t r = 0; r < rows; r += flushRows) {
    const std::size_t n = std::min(flushRows, rows - r);
    rowsShiftedSums(x + r * c, n, c, shift, dsum, qsum);
    for (std::size_t i = 0; i < c; ++i) dsumD[i] += dsum[i], qsumD[i] += qsum[i];
  }
  const double nb = double(rows);
  bool close = true;
  for (std::size_t i = 0; i < c && close; ++i) close = shiftIsClose(nb, dsumD[i], qsumD[i]);
  if (close) {
    mergeShifted(c, nb, shift, dsumD, qsumD, count, mean, m2);
    return true;
  }
  for (std::size_t i = 0; i < c; ++i) shift[i] = float(double(shift[i]) + dsumD[i] / nb);
  return false;
}

void rowsMoments(const float* x, std::size_t rows, std::size_t c, float* scratch, double count,
                 double* mean, double* m2, const float* hint) {
  float* shift = scratch;
  if (count > 0) {
    for (std::size_t i = 0; i < c; ++i) shift[i] = float(mean[i]);
  } else if (hint) {
    for (std::size_t i = 0; i < c; ++i) shift[i] = hint[i];
  } else {
    // The means of the first rows, from one pass of plain sums in the shifted
    // pass's order. The exact two-pass over them by strips, which this
    // replaces, took 13% of 64x256x14x14 NHWC's moments for 6% of its rows.
    const std::size_t first = std::min(kMaxRowBlock, rows);
    float* dsum = scratch + c;
    float* qsum = scratch + 2 * c;
    for (std::size_t i = 0; i < c; ++i) shift[i] = 0;
    rowsShiftedSums(x, first, c, shift, dsum, qsum);
    for (std::size_t i = 0; i < c; ++i) shift[i] = float(double(dsum[i]) / double(first));
  }
  // A pass that misses leaves the rows' means as its sums estimate them, so a
  // second one, shifted by those, nearly always keeps its sums: rows whose
  // first shift was not typical of them (a hint from other rows, first rows
  // unlike the rest) cost two passes.
  if (shiftedMoments(x, rows, c, scratch, count, mean, m2) || shiftedMoments(x, rows, c, scratch, count, mean, m2))
    return;
  for (std::size_t r = 0; r < rows; r += kMaxRowBlock) {
    const std::size_t n = std::min(kMaxRowBlock, rows - r);
    stripBlockMoments(x + r * c, n, c, scratch, count, mean, m2);
    count += double(n);
  }
}

// Rows of c channels are one contiguous span whose channel at offset i is
// i mod c; the padded per-channel arrays (period c, c + kRowsPad entries) let a
// vector start at any channel, so the span streams like a run does.
inline std::size_t nextChannel(std::size_t ch, std::size_t k, std::size_t c) {
  ch += k;
  while (ch >= c) ch -= c;
  return ch;
}

// Rows of whole vectors (c % W == 0) with plain stores, two rows per load of
// a channel vector's parameters q = make(ch): the span walk loads them with
// every output vector, and they are most of its loads (three of four in the
// normalization, six of eight in dx). eval(o, q) is the output vector at
// offset o. Measured: dx at 256x512 ~10% faster; the normalization at 12.8 MB
// 0.86-0.87 -> 0.93-0.96 of the copy probe for 32 and 64 channels, but 0.78 ->
// 0.50 from 128 channels (rows of 512 bytes and more; on one thread as on two,
// and reproduced in a bare C++ loop), so it takes rows of at most
// kPairRowFloats (kernels.h); with streaming stores both were slower and keep
// the span. Rows of up to four vectors take registerRowWalk (below) instead.

template <class Make, class Eval>
inline void twoRowWalk(float* out, std::size_t rows, std::size_t c, Make&& make, Eval&& eval) {
  for (std::size_t r = 0; r < rows; r += 2) {
    const bool pair = r + 1 < rows;
    for (std::size_t ch = 0; ch < c; ch += W) {
      const auto q = make(ch);
      const std::size_t o = r * c + ch;
      V::store(out + o, eval(o, q));
      if (pair) V::store(out + o + c, eval(o + c, q));
    }
  }
}

// Rows of K whole vectors with plain stores, every channel's parameters
// q[k] = make(k W) loaded once into registers: the walk is then a copy's
// loads and stores. Rows of at most four vectors take it (the normalization's
// three parameters per vector then fit in the registers; dx's spill a few):
// measured against twoRowWalk, the normalization of 8x32x112x112 10% faster
// (0.315 -> 0.282 ms, past the copy probe), of 32x24x56x56 20-25%; the
// backward of 8x32x112x112, 32x16x56x56 and 64x24x32x32 3-7%.
template <std::size_t K, class Make, class Eval>
inline void registerRowWalk(float* out, std::size_t rows, Make&& make, Eval&& eval) {
  decltype(make(0)) q[K];
  for (std::size_t k = 0; k < K; ++k) q[k] = make(k * W);
  for (std::size_t o = 0; o < rows * K * W; o += K * W)
    for (std::size_t k = 0; k < K; ++k) V::store(out + o + k * W, eval(o + k * W, q[k]));
}

// registerRowWalk for rows of one to four whole vectors (true), else nothing (false).
template <class Make, class Eval>
inline bool narrowRowWalk(float* out, std::size_t rows, std::size_t c, Make&& make, Eval&& eval) {
  switch (c % W == 0 ? c / W : 0) {
    case 1: return registerRowWalk<1>(out, rows, make, eval), true;
    case 2: return registerRowWalk<2>(out, rows, make, eval), true;
    case 3: return registerRowWalk<3>(out, rows, make, eval), true;
    case 4: return registerRowWalk<4>(out, rows, make, eval), true;
    default: return false;
  }
}

template <bool Relu, bool Stream>
void rowsNormalizeT(const float* x, float* y, std::size_t rows, std::size_t c, const RowsAffine& p) {
  const auto params = [&](std::size_t ch) {
    return AffineV{V::load(p.meanHi + ch), V::load(p.scale + ch), V::load(p.foldedShift + ch)};
  };
  const auto out = [&](std::size_t o, const AffineV& q) { return affine<Relu>(V::load(x + o), q.hi, q.s, q.b); };
  if (!Stream && narrowRowWalk(y, rows, c, params, out)) return;
  if (!Stream && c % W == 0 && c <= kPairRowFloats) return twoRowWalk(y, rows, c, params, out);
  std::size_t ch = 0;
  storeSpan<Stream>(y, rows * c, [&](std::size_t i, std::size_t k) {
    const T v = affine<Relu>(loadK(x + i, k), V::load(p.meanHi + ch), V::load(p.scale + ch), V::load(p.foldedShift + ch));
    ch = nextChannel(ch, k, c);
    return v;
  });
}

void rowsNormalize(const float* x, float* y, std::size_t rows, std::size_t c, RowsAffine p,
                   bool relu, bool stream) {
  if (stream) {
    if (relu) rowsNormalizeT<true, true>(x, y, rows, c, p);
    else rowsNormalizeT<false, true>(x, y, rows, c, p);
  } else {
    if (relu) rowsNormalizeT<true, false>(x, y, rows, c, p);
    else rowsNormalizeT<false, false>(x, y, rows, c, p);
  }
}

template <std::size_t K, std::size_t U, bool Tail, bool Relu>
void stripGradSums(const float* dy, const float* x, std::size_t rows, std::size_t c, std::size_t ch,
                   std::size_t tail, const RowsAffine& p, double* sumDy, double* sumDyXc) {
  T hi[K], s[K], b[K];
  for (std::size_t k = 0; k < K; ++k) {
    const std::size_t o = ch + k * W;
    hi[k] = V::load(p.meanHi + o);
    s[k] = Relu ? V::load(p.scale + o) : V::zero();
    b[k] = Relu ? V::load(p.foldedShift + o) : V::zero();
  }
  T g[U][K], h[U][K];
  for (std::size_t u = 0; u < U; ++u)
    for (std::size_t k = 0; k < K; ++k) g[u][k] = h[u][k] = V::zero();
  auto step = [&](std::size_t row, std::size_t u, std::size_t k) {
    const std::size_t o = row * c + ch + k * W;
    const T xc = V::sub(rowLoad<Tail>(x + o, tail), hi[k]);
    const T d = maskedDy<Relu>(rowLoad<Tail>(dy + o, tail), xc, s[k], b[k]);  // zero past the tail
    g[u][k] = V::add(g[u][k], d);
    h[u][k] = V::fma(d, xc, h[u][k]);
  };
  std::size_t r = 0;
  for (; r + U <= rows; r += U)
    for (std::size_t u = 0; u < U; ++u) {
      prefetchNextStrip<K>(x, r + u, rows, c, ch);
      prefetchNextStrip<K>(dy, r + u, rows, c, ch);
      for (std::size_t k = 0; k < K; ++k) step(r + u, u, k);
    }
  for (; r < rows; ++r)
    for (std::size_t k = 0; k < K; ++k) step(r, 0, k);
  for (std::size_t k = 0; k < K; ++k) {
    T gg = g[0][k], hh = h[0][k];
    for (std::size_t u = 1; u < U; ++u) gg = V::add(gg, g[u][k]), hh = V::add(hh, h[u][k]);
    alignas(64) float gs[W], hs[W];
    V::store(gs, gg);
    V::store(hs, hh);
    const std::size_t n = Tail ? tail : W, o = ch + k * W;
    for (std::size_t i = 0; i < n; ++i) {  // sums over x - hi; subtract lo * sum(dy) for x - mean
      sumDy[o + i] += gs[i];
      sumDyXc[o + i] += double(hs[i]) - double(p.meanLo[o + i]) * double(gs[i]);
    }
  }
}


// How far ahead (bytes) the row-major grad sums ask for their rows, for calls
// larger than kGradSumsL2Floats: measured on the project's machine at
// 64x256x14x14 (12.8 MB tensors, L3) sums 0.54 -> 0.33 ms with 8 KiB (4 KiB
// 0.37, 16 KiB 0.43), 32x64x56x56 1.7 -> 1.0 ms.
constexpr std::size_t kGradSumsAheadBytes = 8192;

template <bool Relu>
void rowsGradSumsRowMajor(const float* dy, const float* x, std::size_t rows, std::size_t c, const RowsAffine& p,
                          float* scratch, double* sumDy, double* sumDyXc) {
  float* gs = scratch;
  float* hs = scratch + c;
  // Row u of four: x - hi and the masked dy at channel vector ch.
  auto term = [&](std::size_t row, std::size_t ch, T hi, T& xc) {
    const std::size_t o = row * c + ch;
    xc = V::sub(V::load(x + o), hi);
    return Relu ? maskedDy<Relu>(V::load(dy + o), xc, V::load(p.scale + ch), V::load(p.foldedShift + ch))
                : V::load(dy + o);
  };
  const std::size_t ahead = std::max<std::size_t>(4, kGradSumsAheadBytes / (c * sizeof(float)));  // rows
  const bool prefetch = rows * c > kGradSumsL2Floats;
  for (std::size_t r0 = 0; r0 < rows; r0 += kMaxRowBlock) {  // float32 lanes over at most kMaxRowBlock rows
    const std::size_t r1 = std::min(rows, r0 + kMaxRowBlock);
    for (std::size_t i = 0; i < 2 * c; ++i) scratch[i] = 0;
    std::size_t r = r0;
    for (; r + 4 <= r1; r += 4)  // four rows per visit of the lanes: a quarter of the scratch traffic
      for (std::size_t ch = 0; ch < c; ch += W) {
        if (prefetch && ch % 16 == 0 && r + 4 + ahead <= rows)
          for (std::size_t u = 0; u < 4; ++u) {
            V::prefetch(x + (r + u + ahead) * c + ch);
            V::prefetch(dy + (r + u + ahead) * c + ch);
          }
        const T hi = V::load(p.meanHi + ch);
        T x0, x1, x2, x3;
        const T d0 = term(r, ch, hi, x0), d1 = term(r + 1, ch, hi, x1);
        const T d2 = term(r + 2, ch, hi, x2), d3 = term(r + 3, ch, hi, x3);
        V::store(gs + ch, V::add(V::load(gs + ch), sum4(d0, d1, d2, d3)));
        V::store(hs + ch, V::add(V::load(hs + ch), V::fma(d3, x3, V::fma(d2, x2, V::fma(d1, x1, V::mul(d0, x0))))));
      }
    for (; r < r1; ++r)
      for (std::size_t ch = 0; ch < c; ch += W) {
        T xc;
        const T d = V::pin(term(r, ch, V::load(p.meanHi + ch), xc));
        V::store(gs + ch, V::add(V::load(gs + ch), d));
        V::store(hs + ch, V::fma(d, xc, V::load(hs + ch)));
      }
    for (std::size_t i = 0; i < c; ++i) {  // sums over x - hi; subtract lo * sum(dy) for x - mean
      sumDy[i] += gs[i];
      sumDyXc[i] += double(hs[i]) - double(p.meanLo[i]) * double(gs[i]);
    }
  }
}

template <bool Relu>
void rowsGradSumsT(const float* dy, const float* x, std::size_t rows, std::size_t c, const RowsAffine& p,
                   float* scratch, double* sumDy, double* sumDyXc) {
  if (rowMajor(c)) {
    rowsGradSumsRowMajor<Relu>(dy, x, rows, c, p, scratch, sumDy, sumDyXc);
    return;
  }
  for (std::size_t r0 = 0; r0 < rows; r0 += kMaxRowBlock) {  // registers sum at most kMaxRowBlock rows
    const std::size_t n = std::min(kMaxRowBlock, rows - r0);
    const float *xb = x + r0 * c, *db = dy + r0 * c;
    std::size_t ch = 0;
    for (; ch + 4 * W <= c; ch += 4 * W) stripGradSums<4, 1, false, Relu>(db, xb, n, c, ch, 0, p, sumDy, sumDyXc);
    for (; ch + 2 * W <= c; ch += 2 * W) stripGradSums<2, 2, false, Relu>(db, xb, n, c, ch, 0, p, sumDy, sumDyXc);
    for (; ch + W <= c; ch += W) stripGradSums<1, 4, false, Relu>(db, xb, n, c, ch, 0, p, sumDy, sumDyXc);
    if (ch < c) stripGradSums<1, 1, true, Relu>(db, xb, n, c, ch, c - ch, p, sumDy, sumDyXc);
  }
}

void rowsGradSums(const float* dy, const float* x, std::size_t rows, std::size_t c, RowsAffine p,
                  bool relu, float* scratch, double* sumDy, double* sumDyXc) {
  if (relu) rowsGradSumsT<true>(dy, x, rows, c, p, scratch, sumDy, sumDyXc);
  else rowsGradSumsT<false>(dy, x, rows, c, p, scratch, sumDy, sumDyXc);
}

template <bool Relu, bool Stream>
void rowsGradApplyT(const float* dy, const float* x, float* dx, std::size_t rows, std::size_t c,
                    const RowsAffine& p, const RowsGrad& g) {
  const auto params = [&](std::size_t ch) {
    return GradV{V::load(p.meanHi + ch), Relu ? V::load(p.scale + ch) : V::zero(),
                 Relu ? V::load(p.foldedShift + ch) : V::zero(), V::load(g.a + ch), V::load(g.b + ch),
                 V::load(g.foldedC + ch)};
  };
  const auto out = [&](std::size_t o, const GradV& q) {
    return gradOut<Relu>(V::load(dy + o), V::load(x + o), q.hi, q.s, q.b, q.ga, q.gb, q.gc);
  };
  if (!Stream && narrowRowWalk(dx, rows, c, params, out)) return;
  if (!Stream && c % W == 0) return twoRowWalk(dx, rows, c, params, out);  // every width: see twoRowWalk
  std::size_t ch = 0;
  storeSpan<Stream>(dx, rows * c, [&](std::size_t i, std::size_t k) {
    const T v = gradOut<Relu>(loadK(dy + i, k), loadK(x + i, k), V::load(p.meanHi + ch),
                              Relu ? V::load(p.scale + ch) : V::zero(), Relu ? V::load(p.foldedShift + ch) : V::zero(),
                              V::load(g.a + ch), V::load(g.b + ch), V::load(g.foldedC + ch));
    ch = nextChannel(ch, k, c);
    return v;
  });
}

void rowsGradApply(const float* dy, const float* x, float* dx, std::size_t rows, std::size_t c,
                   RowsAffine p, RowsGrad g, bool relu, bool stream) {
  if (stream) {
    if (relu) rowsGradApplyT<true, true>(dy, x, dx, rows, c, p, g);
    else rowsGradApplyT<false, true>(dy, x, dx, rows, c, p, g);
  } else {
    if (relu) rowsGradApplyT<true, false>(dy, x, dx, rows, c, p, g);
    else rowsGradApplyT<false, false>(dy, x, dx, rows, c, p, g);
  }
}

// --- Bandwidth probes ------------------------------------------------------------

double probeRead(const float* x, std::size_t n) {
  T a[8];
  for (auto& v : a) v = V::zero();
  std::size_t i = 0;
  for (; i + 8 * W <= n; i += 8 * W)
    for (std::size_t k = 0; k < 8; ++k) a[k] = V::add(a[k], V::load(x + i + k * W));
  for (; i < n; i += W) a[0] = V::add(a[0], loadK(x + i, std::min(W, n - i)));
  return V::hsum(V::add(sum4(a[0], a[1], a[2], a[3]), sum4(a[4], a[5], a[6], a[7])));
}

template <bool Stream>
void probeCopyT(const float* x, float* y, std::size_t n) {
  storeSpan<Stream>(y, n, [&](std::size_t i, std::size_t k) { return loadK(x + i, k); });
}

void probeCopy(const float* x, float* y, std::size_t n, bool stream) {
  if (stream) probeCopyT<true>(x, y, n);
  else probeCopyT<false>(x, y, n);
}

template <bool Stream>
void probeTriadT(const float* a, const float* b, float* out, std::size_t n) {
  storeSpan<Stream>(out, n, [&](std::size_t i, std::size_t k) { return V::add(loadK(a + i, k), loadK(b + i, k)); });
}

void probeTriad(const float* a, const float* b, float* out, std::size_t n, bool stream) {
  if (stream) probeTriadT<true>(a, b, out, n);
  else probeTriadT<false>(a, b, out, n);
}

const KernelTable& simdTable() {
  static const KernelTable t{V::kName,     V::kStream,    W,    runsMoments,   runsMomentsNormalizing, runSums, runsGradSums, runGradSums, spanNormalize,
                             spanGradApply, rowsMoments,   rowsNormalize, rowsGradSums,
                             rowsGradApply, V::fence,     invstdOf,      probeRead,
                             probeCopy,     probeTriad};
  return t;
}

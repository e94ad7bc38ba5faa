// oneDNN's convolutions as XLA FFI custom calls, for `vaeprior_jax.onednn` (conv_backend='onednn').
// NHWC activations with any number of leading batch dimensions ([..., H, W, C], flattened to N
// images), HWIO kernels, float32, explicit non-negative padding, no dilation, no groups.
//
//   vaeprior_jax_onednn_conv_fwd(x, w) -> y                    convolution_forward
//   vaeprior_jax_onednn_conv_bwd_data(dy, w) -> dx             convolution_backward_data
//   vaeprior_jax_onednn_conv_bwd_weights(x, dy) -> (dw, db)    convolution_backward_weights (with
//                                                              the bias gradient)
//
// Attributes: sh, sw (strides), pt, pb, pl, pr (padding: top, bottom, left, right). Primitives are
// created once per shape and calling thread, and kept: several devices of one process call them
// concurrently, and oneDNN's library-managed scratchpad is not safe for concurrent executions of
// one primitive (one shared cache gave NaNs on 4 simulated devices). Kernels are reordered to and
// from oneDNN's preferred layout on every call (3x3x64x64 floats: negligible next to the
// convolution). vaeprior_jax/cpu/onednn.py compiles this file at first use.

#include <array>
#include <map>
#include <string>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace {

namespace ffi = xla::ffi;
using dt = dnnl::memory::data_type;
using md = dnnl::memory::desc;
using tag = dnnl::memory::format_tag;
using Key = std::array<int64_t, 15>;

dnnl::engine& Engine() {
  static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

struct Geometry {
  int64_t n, h, w, c, kh, kw, f, oh, ow, sh, sw, pt, pb, pl, pr;
  Key key() const { return {n, h, w, c, kh, kw, f, oh, ow, sh, sw, pt, pb, pl, pr}; }
  md src(tag t = tag::nhwc) const { return md({n, c, h, w}, dt::f32, t); }
  md dst() const { return md({n, f, oh, ow}, dt::f32, tag::nhwc); }
  md weights(tag t) const { return md({f, c, kh, kw}, dt::f32, t); }
  md bias() const { return md({f}, dt::f32, tag::x); }
  dnnl::memory::dims strides() const { return {sh, sw}; }
  dnnl::memory::dims pad_l() const { return {pt, pl}; }
  dnnl::memory::dims pad_r() const { return {pb, pr}; }
  dnnl::convolution_forward::primitive_desc forward(dnnl::prop_kind kind) const {
    return dnnl::convolution_forward::primitive_desc(
        Engine(), kind, dnnl::algorithm::convolution_direct, src(), weights(tag::any), dst(),
        strides(), pad_l(), pad_r());
  }
};

// `cache` is thread_local (see the header), so no lock is needed.
template <typename Primitive>
Primitive& Cached(std::map<Key, Primitive>& cache, const Geometry& g,
                  Primitive (*make)(const Geometry&)) {
  auto it = cache.find(g.key());
  if (it == cache.end()) it = cache.emplace(g.key(), make(g)).first;
  return it->second;
}

// The user's HWIO kernel as a oneDNN memory in the primitive's layout (reordered when they differ).
dnnl::memory KernelIn(const md& wanted, const Geometry& g, float* data, dnnl::stream& s) {
  dnnl::memory user(g.weights(tag::hwio), Engine(), data);
  if (wanted == user.get_desc()) return user;
  dnnl::memory out(wanted, Engine());
  dnnl::reorder(user, out).execute(s, user, out);
  return out;
}

// A primitive with the descriptor it was made from (which holds the memory layouts it chose).
template <typename P>
struct WithDesc {
  explicit WithDesc(const typename P::primitive_desc& desc) : pd(desc), prim(desc) {}
  typename P::primitive_desc pd;
  P prim;
};
using Fwd = WithDesc<dnnl::convolution_forward>;
using BwdData = WithDesc<dnnl::convolution_backward_data>;
using BwdWeights = WithDesc<dnnl::convolution_backward_weights>;

Fwd MakeFwd(const Geometry& g) { return Fwd(g.forward(dnnl::prop_kind::forward_training)); }

BwdData MakeBwdData(const Geometry& g) {
  return BwdData(dnnl::convolution_backward_data::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.src(), g.weights(tag::any), g.dst(),
      g.strides(), g.pad_l(), g.pad_r(), g.forward(dnnl::prop_kind::forward_training)));
}

BwdWeights MakeBwdWeights(const Geometry& g) {
  return BwdWeights(dnnl::convolution_backward_weights::primitive_desc(
      Engine(), dnnl::algorithm::convolution_direct, g.src(), g.weights(tag::any), g.bias(),
      g.dst(), g.strides(), g.pad_l(), g.pad_r(), g.forward(dnnl::prop_kind::forward_training)));
}

thread_local std::map<Key, Fwd> fwd_cache;
thread_local std::map<Key, BwdData> bwd_data_cache;
thread_local std::map<Key, BwdWeights> bwd_weights_cache;

// x [..., H, W, C] (the leading dimensions are the N images), w [kh, kw, C, F], y [..., OH, OW, F].
template <typename Dims>
ffi::ErrorOr<Geometry> MakeGeometry(const Dims& x, const Dims& w, const Dims& y, int64_t sh,
                                    int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  const size_t r = x.size();
  if (r < 3 || y.size() != r || w.size() != 4) {
    return ffi::Unexpected<ffi::Error>(ffi::Error(
        ffi::ErrorCode::kInvalidArgument,
        "oneDNN convolution: needs images [..., H, W, C] and a kernel [kh, kw, C, F]"));
  }
  int64_t n = 1;
  for (size_t i = 0; i + 3 < r; ++i) n *= x[i];
  return Geometry{n, x[r - 3], x[r - 2], x[r - 1], w[0], w[1], w[3], y[r - 3], y[r - 2],
                  sh, sw, pt, pb, pl, pr};
}

// Runs body(geometry) with oneDNN's exceptions turned into FFI errors.
template <typename Body>
ffi::Error Run(const ffi::ErrorOr<Geometry>& geometry, Body body) {
  if (geometry.has_error()) return geometry.error();
  try {
    body(geometry.value());
  } catch (const dnnl::error& e) {
    return ffi::Error(ffi::ErrorCode::kInternal, std::string("oneDNN: ") + e.what());
  }
  return ffi::Error::Success();
}

ffi::Error FwdImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::ResultBuffer<ffi::F32> y,
                   int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto geometry = MakeGeometry(x.dimensions(), w.dimensions(), y->dimensions(), sh, sw, pt, pb, pl,
                               pr);
  return Run(geometry, [&](const Geometry& g) {
    Fwd& p = Cached(fwd_cache, g, &MakeFwd);
    dnnl::stream s(Engine());
    dnnl::memory src(p.pd.src_desc(), Engine(), x.typed_data());
    dnnl::memory dst(p.pd.dst_desc(), Engine(), y->typed_data());
    dnnl::memory wei = KernelIn(p.pd.weights_desc(), g, w.typed_data(), s);
    p.prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    s.wait();
  });
}

ffi::Error BwdDataImpl(ffi::Buffer<ffi::F32> dy, ffi::Buffer<ffi::F32> w,
                       ffi::ResultBuffer<ffi::F32> dx, int64_t sh, int64_t sw, int64_t pt,
                       int64_t pb, int64_t pl, int64_t pr) {
  auto geometry = MakeGeometry(dx->dimensions(), w.dimensions(), dy.dimensions(), sh, sw, pt, pb,
                               pl, pr);
  return Run(geometry, [&](const Geometry& g) {
    BwdData& p = Cached(bwd_data_cache, g, &MakeBwdData);
    dnnl::stream s(Engine());
    dnnl::memory diff_dst(p.pd.diff_dst_desc(), Engine(), dy.typed_data());
    dnnl::memory diff_src(p.pd.diff_src_desc(), Engine(), dx->typed_data());
    dnnl::memory wei = KernelIn(p.pd.weights_desc(), g, w.typed_data(), s);
    p.prim.execute(s, {{DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_WEIGHTS, wei},
                       {DNNL_ARG_DIFF_SRC, diff_src}});
    s.wait();
  });
}

ffi::Error BwdWeightsImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> dy,
                          ffi::ResultBuffer<ffi::F32> dw, ffi::ResultBuffer<ffi::F32> db,
                          int64_t sh, int64_t sw, int64_t pt, int64_t pb, int64_t pl, int64_t pr) {
  auto geometry = MakeGeometry(x.dimensions(), dw->dimensions(), dy.dimensions(), sh, sw, pt, pb,
                               pl, pr);
  return Run(geometry, [&](const Geometry& g) {
    BwdWeights& p = Cached(bwd_weights_cache, g, &MakeBwdWeights);
    dnnl::stream s(Engine());
    dnnl::memory src(p.pd.src_desc(), Engine(), x.typed_data());
    dnnl::memory diff_dst(p.pd.diff_dst_desc(), Engine(), dy.typed_data());
    dnnl::memory diff_bias(p.pd.diff_bias_desc(), Engine(), db->typed_data());
    dnnl::memory user_dw(g.weights(tag::hwio), Engine(), dw->typed_data());
    const bool reorder = p.pd.diff_weights_desc() != user_dw.get_desc();
    dnnl::memory diff_w = reorder ? dnnl::memory(p.pd.diff_weights_desc(), Engine()) : user_dw;
    p.prim.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst},
                       {DNNL_ARG_DIFF_WEIGHTS, diff_w}, {DNNL_ARG_DIFF_BIAS, diff_bias}});
    if (reorder) dnnl::reorder(diff_w, user_dw).execute(s, diff_w, user_dw);
    s.wait();
  });
}

}  // namespace

#define CONV_ATTRS                                                                          \
  .Attr<int64_t>("sh").Attr<int64_t>("sw").Attr<int64_t>("pt").Attr<int64_t>("pb")          \
      .Attr<int64_t>("pl").Attr<int64_t>("pr")

XLA_FFI_DEFINE_HANDLER_SYMBOL(vaeprior_jax_onednn_conv_fwd, FwdImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(vaeprior_jax_onednn_conv_bwd_data, BwdDataImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);
XLA_FFI_DEFINE_HANDLER_SYMBOL(vaeprior_jax_onednn_conv_bwd_weights, BwdWeightsImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>() CONV_ATTRS);

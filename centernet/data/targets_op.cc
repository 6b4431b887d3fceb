// CenternetTargets: a batch's CenterNet training targets in one TensorFlow kernel.
//
// The same targets as `render_targets_batch` in targets.py (its TensorFlow ops are the portable
// path and the specification; DESIGN.md, Targets): boxes clipped to the grid, boxes without
// area skipped, each image's first `max_objects` kept, float64 centres, and per kept object a
// Gaussian window drawn into its class's heatmap with the element-wise maximum. Two tables
// computed by targets.py's own float64 formulas keep the two paths equal: the radius of every
// (ceil(h), ceil(w)) a clipped box can have, and the float32 Gaussian factor G[r][d] at distance
// d from the centre of a window of radius r; a window cell is G[r][|dy|] * G[r][|dx|] in float32.
// Here everything else is exact IEEE arithmetic (clip, subtract, halve, floor, ceil).
//
// Why a kernel: about 170 TensorFlow ops cost about 1.6 ms per batch of 8 in fixed overhead
// alone, and de-duplicating and scattering the windows' cells another 5 ms at 100 objects per
// image; here a batch takes about 2.7 ms, most of it writing the 42 MB of heatmaps once.
// Built on first use by native.py.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace centernet {

using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;

// Rows leave the kernel through non-temporal stores: the heatmap (5 MB per 128 x 128 x 80
// image) is written once, straight to memory, without first reading each line into the cache
// as ordinary stores do, and without evicting what the rest of the pipeline uses. The widest
// vector stores the CPU has are chosen at run time, so the library needs no -march flag.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static void StreamRowAvx512(float* dst, const float* src,
                                                                  int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 64 != 0; ++i) dst[i] = src[i];
  for (; i + 16 <= n; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

__attribute__((target("avx"))) static void StreamRowAvx(float* dst, const float* src,
                                                           int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 32 != 0; ++i) dst[i] = src[i];
  for (; i + 8 <= n; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

static void StreamRowSse2(float* dst, const float* src, int64_t n) {
  int64_t i = 0;
  for (; i < n && reinterpret_cast<uintptr_t>(dst + i) % 16 != 0; ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

using StreamRow = void (*)(float*, const float*, int64_t);

static StreamRow BestStreamRow() {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return StreamRowAvx512;
  if (__builtin_cpu_supports("avx")) return StreamRowAvx;
  return StreamRowSse2;
}

static void StreamFence() { _mm_sfence(); }
#else
static void StreamRowPlain(float* dst, const float* src, int64_t n) {
  std::memcpy(dst, src, sizeof(float) * n);
}
using StreamRow = void (*)(float*, const float*, int64_t);
static StreamRow BestStreamRow() { return StreamRowPlain; }
static void StreamFence() {}
#endif

// One kept object's window: rows y0..y1 and columns x0..x1 (inclusive) of class `label`
// around the integer centre (cx, cy); `factor[d]` is its Gaussian at distance d.
struct Window {
  int64_t x0, x1, y0, y1, cx, cy, label;
  const float* factor;
};

REGISTER_OP("CenternetTargets")
    .Input("boxes: double")           // [B, N, 4] x1, y1, x2, y2 in output pixels
    .Input("labels: int32")           // [B, N] class ids
    .Input("radius_table: int32")     // [max_y + 1, max_x + 1]: radius by (ceil(h), ceil(w))
    .Input("gaussian_table: float")   // [R + 1, R + 1]: G[r][d], d <= r
    .Attr("height: int >= 1")
    .Attr("width: int >= 1")
    .Attr("num_classes: int >= 1")
    .Attr("max_objects: int >= 1")
    .Attr("clip_to_edge: bool")
    .Output("heatmap: float")         // [B, H, W, C]
    .Output("wh: float")              // [B, K, 2]
    .Output("reg: float")             // [B, K, 2]
    .Output("ind: int32")             // [B, K]
    .Output("mask: float")            // [B, K]
    .Output("num_dropped: int32")     // [B]
    .SetShapeFn([](InferenceContext* c) {
      ShapeHandle boxes;
      TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 3, &boxes));
      int64_t height, width, num_classes, max_objects;
      TF_RETURN_IF_ERROR(c->GetAttr("height", &height));
      TF_RETURN_IF_ERROR(c->GetAttr("width", &width));
      TF_RETURN_IF_ERROR(c->GetAttr("num_classes", &num_classes));
      TF_RETURN_IF_ERROR(c->GetAttr("max_objects", &max_objects));
      DimensionHandle batch = c->Dim(boxes, 0);
      c->set_output(0, c->MakeShape({batch, height, width, num_classes}));
      c->set_output(1, c->MakeShape({batch, max_objects, 2}));
      c->set_output(2, c->MakeShape({batch, max_objects, 2}));
      c->set_output(3, c->MakeShape({batch, max_objects}));
      c->set_output(4, c->MakeShape({batch, max_objects}));
      c->set_output(5, c->MakeShape({batch}));
      return absl::OkStatus();
    });

class TargetsOp : public OpKernel {
 public:
  explicit TargetsOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("height", &height_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("width", &width_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_classes", &num_classes_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_objects", &max_objects_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_to_edge", &clip_to_edge_));
    stream_row_ = BestStreamRow();
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& boxes_in = ctx->input(0);
    const Tensor& labels_in = ctx->input(1);
    const Tensor& radius_in = ctx->input(2);
    const Tensor& gaussian_in = ctx->input(3);
    OP_REQUIRES(ctx, boxes_in.dims() == 3 && boxes_in.dim_size(2) == 4,
                absl::InvalidArgumentError("render_targets: boxes must be [B, N, 4], got " +
                                           boxes_in.shape().DebugString()));
    const int64_t batch = boxes_in.dim_size(0), count = boxes_in.dim_size(1);
    OP_REQUIRES(ctx, labels_in.dims() == 2 && labels_in.dim_size(0) == batch &&
                         labels_in.dim_size(1) == count,
                absl::InvalidArgumentError("render_targets: labels must be [B, N] like boxes, got " +
                                           labels_in.shape().DebugString()));
    const int64_t H = height_, W = width_, C = num_classes_, K = max_objects_;
    const double max_x = clip_to_edge_ ? W : W - 1, max_y = clip_to_edge_ ? H : H - 1;
    OP_REQUIRES(ctx, radius_in.dims() == 2 && radius_in.dim_size(0) == max_y + 1 &&
                         radius_in.dim_size(1) == max_x + 1,
                absl::InvalidArgumentError("render_targets: radius table of the wrong shape"));
    const int64_t table = gaussian_in.dims() == 2 ? gaussian_in.dim_size(0) : 0;
    OP_REQUIRES(ctx, table > 0 && gaussian_in.dim_size(1) == table,
                absl::InvalidArgumentError("render_targets: Gaussian table of the wrong shape"));

    const double* boxes = boxes_in.flat<double>().data();
    const int32_t* labels = labels_in.flat<int32_t>().data();
    for (int64_t i = 0; i < batch * count; ++i) {
      OP_REQUIRES(ctx, labels[i] >= 0 && labels[i] < C,
                  absl::InvalidArgumentError(absl::StrCat(
                      "render_targets: labels must be in 0..", C - 1, ", got ", labels[i],
                      " (image ", i / count, ", box ", i % count, ")")));
    }
    const int32_t* radius_table = radius_in.flat<int32_t>().data();
    const float* gaussian = gaussian_in.flat<float>().data();

    Tensor *heatmap_out, *wh_out, *reg_out, *ind_out, *mask_out, *dropped_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({batch, H, W, C}), &heatmap_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, TensorShape({batch, K, 2}), &wh_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(2, TensorShape({batch, K, 2}), &reg_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(3, TensorShape({batch, K}), &ind_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(4, TensorShape({batch, K}), &mask_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(5, TensorShape({batch}), &dropped_out));
    float* heatmap = heatmap_out->flat<float>().data();
    float* wh = wh_out->flat<float>().data();
    float* reg = reg_out->flat<float>().data();
    int32_t* ind = ind_out->flat<int32_t>().data();
    float* mask = mask_out->flat<float>().data();
    int32_t* dropped = dropped_out->flat<int32_t>().data();
    std::memset(wh, 0, sizeof(float) * wh_out->NumElements());
    std::memset(reg, 0, sizeof(float) * reg_out->NumElements());
    std::memset(ind, 0, sizeof(int32_t) * ind_out->NumElements());
    std::memset(mask, 0, sizeof(float) * mask_out->NumElements());

    const int64_t row_length = W * C;
    std::vector<float> row(row_length), zeros(row_length, 0.0f);
    std::vector<Window> windows;
    for (int64_t image = 0; image < batch; ++image) {
      windows.clear();
      int64_t valid = 0;
      for (int64_t n = 0; n < count; ++n) {
        const double* box = boxes + (image * count + n) * 4;
        // tf.clip_by_value: minimum with the upper bound, then maximum with 0
        const double x1 = std::max(std::min(box[0], max_x), 0.0);
        const double y1 = std::max(std::min(box[1], max_y), 0.0);
        const double x2 = std::max(std::min(box[2], max_x), 0.0);
        const double y2 = std::max(std::min(box[3], max_y), 0.0);
        const double box_w = x2 - x1, box_h = y2 - y1;
        if (!(box_w > 0.0 && box_h > 0.0)) continue;  // no area (or NaN): no slot
        const int64_t slot = valid++;
        if (slot >= K) continue;  // counted in num_dropped
        const double centre_x = (x1 + x2) / 2, centre_y = (y1 + y2) / 2;
        const double int_x = std::floor(centre_x), int_y = std::floor(centre_y);
        const int64_t at = image * K + slot;
        wh[2 * at] = static_cast<float>(box_w);
        wh[2 * at + 1] = static_cast<float>(box_h);
        reg[2 * at] = static_cast<float>(centre_x - int_x);
        reg[2 * at + 1] = static_cast<float>(centre_y - int_y);
        const int64_t cx = static_cast<int64_t>(int_x), cy = static_cast<int64_t>(int_y);
        ind[at] = static_cast<int32_t>(cy * W + cx);
        mask[at] = 1.0f;

        // ceil of a clipped size is in 0..max: inside the table by construction
        const int64_t r = radius_table[static_cast<int64_t>(std::ceil(box_h)) *
                                           (static_cast<int64_t>(max_x) + 1) +
                                       static_cast<int64_t>(std::ceil(box_w))];
        OP_REQUIRES(ctx, r < table,
                    absl::InternalError("render_targets: radius beyond the Gaussian table"));
        windows.push_back({std::max<int64_t>(cx - r, 0), std::min<int64_t>(cx + r, W - 1),
                           std::max<int64_t>(cy - r, 0), std::min<int64_t>(cy + r, H - 1), cx,
                           cy, labels[image * count + n], gaussian + r * table});
      }
      dropped[image] = static_cast<int32_t>(std::max<int64_t>(valid - K, 0));
      // Row by row: the windows crossing it are drawn into a zeroed row that stays in the
      // cache (each cell the maximum of its class's windows), which then goes out in one pass.
      for (int64_t y = 0; y < H; ++y) {
        bool drawn = false;
        for (const Window& window : windows) {
          if (y < window.y0 || y > window.y1) continue;
          if (!drawn) {
            std::memset(row.data(), 0, sizeof(float) * row_length);
            drawn = true;
          }
          const float along_y = window.factor[std::abs(y - window.cy)];
          float* cell = row.data() + window.x0 * C + window.label;
          for (int64_t x = window.x0; x <= window.x1; ++x, cell += C) {
            const float value = along_y * window.factor[std::abs(x - window.cx)];
            if (value > *cell) *cell = value;
          }
        }
        stream_row_(heatmap + (image * H + y) * row_length, drawn ? row.data() : zeros.data(),
                    row_length);
      }
    }
    StreamFence();  // the streamed rows are visible before the op completes
  }

 private:
  int64_t height_, width_, num_classes_, max_objects_;
  bool clip_to_edge_;
  StreamRow stream_row_;
};

REGISTER_KERNEL_BUILDER(Name("CenternetTargets").Device(::tensorflow::DEVICE_CPU), TargetsOp);

}  // namespace centernet

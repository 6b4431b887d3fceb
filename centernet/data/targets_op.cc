// CenternetTargets and TtfnetTargets: a batch's training targets in one TensorFlow kernel each.
//
// The same targets as `render_targets_batch` and `render_ttf_targets_batch` in targets.py (its
// TensorFlow ops are the portable path and the specification; docs/architecture.md, Targets):
// boxes clipped to the grid, boxes without area skipped, each image's first `max_objects` kept,
// float64 centres, and per kept object a Gaussian window drawn into its class's heatmap with the
// element-wise maximum (round for CenterNet, elliptical for TTFNet); TTFNet's box regression
// targets and weights besides. Every transcendental value comes from TensorFlow, so that the two
// paths are equal: the float32 Gaussian factor G[r][d] at distance d from the centre of a window
// of radius r (a table computed by targets.py's float64 formulas; a window cell is
// G[ry][|dy|] * G[rx][|dx|] in float32), CenterNet's radius of every (ceil(h), ceil(w)) a clipped
// box can have (a table), and TTFNet's log(area) of every box (an input). Here everything else
// is exact IEEE arithmetic (clip, subtract, multiply, divide, floor, ceil, sums that are exact).
//
// Why a kernel: about 170 TensorFlow ops cost about 1.6 ms per batch of 8 in fixed overhead
// alone, and de-duplicating and scattering the windows' cells another 5 ms at 100 objects per
// image; here a batch takes about 2.7 ms, most of it writing the 42 MB of heatmaps once. Memory:
// the outputs and one row per image, never a plane per object. Built by native.py.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
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

// A kept object: its clipped box (float64 output pixels), integer centre, class, and its row
// in the padded batch.
struct Object {
  double x1, y1, x2, y2;
  int64_t cx, cy, label, row;
};

// One window to draw into the heatmap: rows y0..y1 and columns x0..x1 (inclusive, inside the
// grid) of class `label` around the integer centre (cx, cy); `factor_x[d]` and `factor_y[d]`
// are its Gaussian at distance d along each axis (rows of the Gaussian table).
struct Window {
  int64_t x0, x1, y0, y1, cx, cy, label;
  const float* factor_x;
  const float* factor_y;
};

// Shapes of the outputs both ops share: heatmap, wh, reg, ind, mask, num_dropped.
static absl::Status CentreShapes(InferenceContext* c) {
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
}

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
    .SetShapeFn(CentreShapes);

REGISTER_OP("TtfnetTargets")
    .Input("boxes: double")           // [B, N, 4] x1, y1, x2, y2 in output pixels
    .Input("labels: int32")           // [B, N] class ids
    .Input("log_area: double")        // [B, N] log(max(w h stride^2, 2)) of each clipped box
    .Input("fractions: double")       // [2] alpha (heatmap), beta (box regression)
    .Input("gaussian_table: float")   // [R + 1, R + 1]: G[r][d], d <= r
    .Attr("height: int >= 1")
    .Attr("width: int >= 1")
    .Attr("num_classes: int >= 1")
    .Attr("max_objects: int >= 1")
    .Attr("stride: int >= 1")
    .Attr("clip_to_edge: bool")
    .Output("heatmap: float")         // [B, H, W, C]
    .Output("wh: float")              // [B, K, 2]
    .Output("reg: float")             // [B, K, 2]
    .Output("ind: int32")             // [B, K]
    .Output("mask: float")            // [B, K]
    .Output("num_dropped: int32")     // [B]
    .Output("box_target: float")      // [B, H, W, 4]
    .Output("box_weight: float")      // [B, H, W]
    .SetShapeFn([](InferenceContext* c) {
      TF_RETURN_IF_ERROR(CentreShapes(c));
      DimensionHandle batch = c->Dim(c->output(0), 0);
      DimensionHandle height = c->Dim(c->output(0), 1), width = c->Dim(c->output(0), 2);
      c->set_output(6, c->MakeShape({batch, height, width, 4}));
      c->set_output(7, c->MakeShape({batch, height, width}));
      return absl::OkStatus();
    });

// What both kernels share: the checks of boxes, labels and the Gaussian table, the kept objects
// and their centre targets, and drawing windows into a heatmap.
class TargetsKernel : public OpKernel {
 public:
  explicit TargetsKernel(OpKernelConstruction* ctx) : OpKernel(ctx) {
    OP_REQUIRES_OK(ctx, ctx->GetAttr("height", &height_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("width", &width_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("num_classes", &num_classes_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("max_objects", &max_objects_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("clip_to_edge", &clip_to_edge_));
    max_x_ = clip_to_edge_ ? width_ : width_ - 1;
    max_y_ = clip_to_edge_ ? height_ : height_ - 1;
    stream_row_ = BestStreamRow();
  }

 protected:
  // The centre targets' outputs (1..5) of a batch, zeroed, and the heatmap (0), not zeroed:
  // DrawHeatmap writes every row of it.
  struct Centre {
    float *heatmap, *wh, *reg, *mask;
    int32_t *ind, *dropped;
  };

  // The Gaussian table: G[r][d] at data[r * side + d], side = R + 1.
  struct Gaussian {
    const float* data;
    int64_t side;
  };

  // Checks boxes [B, N, 4], labels [B, N] in 0..C-1 and the square Gaussian table (input
  // `table_input`), then allocates the shared outputs; `batch`, `count` are B and N. (Compute
  // may run on several threads at once: all of a call's state is local.)
  absl::Status Prepare(OpKernelContext* ctx, int table_input, int64_t* batch, int64_t* count,
                       Centre* out, Gaussian* table) const {
    const Tensor& boxes = ctx->input(0);
    const Tensor& labels = ctx->input(1);
    const Tensor& gaussian = ctx->input(table_input);
    if (boxes.dims() != 3 || boxes.dim_size(2) != 4) {
      return absl::InvalidArgumentError("render_targets: boxes must be [B, N, 4], got " +
                                        boxes.shape().DebugString());
    }
    *batch = boxes.dim_size(0);
    *count = boxes.dim_size(1);
    if (labels.dims() != 2 || labels.dim_size(0) != *batch || labels.dim_size(1) != *count) {
      return absl::InvalidArgumentError("render_targets: labels must be [B, N] like boxes, got " +
                                        labels.shape().DebugString());
    }
    const int32_t* label = labels.flat<int32_t>().data();
    for (int64_t i = 0; i < *batch * *count; ++i) {
      if (label[i] < 0 || label[i] >= num_classes_) {
        return absl::InvalidArgumentError(absl::StrCat(
            "render_targets: labels must be in 0..", num_classes_ - 1, ", got ", label[i],
            " (image ", i / *count, ", box ", i % *count, ")"));
      }
    }
    const int64_t side = gaussian.dims() == 2 ? gaussian.dim_size(0) : 0;
    if (side == 0 || gaussian.dim_size(1) != side) {
      return absl::InvalidArgumentError("render_targets: Gaussian table of the wrong shape");
    }
    *table = {gaussian.flat<float>().data(), side};
    const int64_t B = *batch, H = height_, W = width_, C = num_classes_, K = max_objects_;
    Tensor *heatmap, *wh, *reg, *ind, *mask, *dropped;
    TF_RETURN_IF_ERROR(ctx->allocate_output(0, TensorShape({B, H, W, C}), &heatmap));
    TF_RETURN_IF_ERROR(ctx->allocate_output(1, TensorShape({B, K, 2}), &wh));
    TF_RETURN_IF_ERROR(ctx->allocate_output(2, TensorShape({B, K, 2}), &reg));
    TF_RETURN_IF_ERROR(ctx->allocate_output(3, TensorShape({B, K}), &ind));
    TF_RETURN_IF_ERROR(ctx->allocate_output(4, TensorShape({B, K}), &mask));
    TF_RETURN_IF_ERROR(ctx->allocate_output(5, TensorShape({B}), &dropped));
    *out = {heatmap->flat<float>().data(), wh->flat<float>().data(),
            reg->flat<float>().data(),     mask->flat<float>().data(),
            ind->flat<int32_t>().data(),   dropped->flat<int32_t>().data()};
    std::memset(out->wh, 0, sizeof(float) * wh->NumElements());
    std::memset(out->reg, 0, sizeof(float) * reg->NumElements());
    std::memset(out->ind, 0, sizeof(int32_t) * ind->NumElements());
    std::memset(out->mask, 0, sizeof(float) * mask->NumElements());
    return absl::OkStatus();
  }

  // Image `image`'s kept objects into `kept` (input order), with their centre targets in
  // slots 0.. and the count dropped for want of a slot.
  void Keep(OpKernelContext* ctx, int64_t image, int64_t count, const Centre& out,
            std::vector<Object>* kept) const {
    const double* boxes = ctx->input(0).flat<double>().data();
    const int32_t* labels = ctx->input(1).flat<int32_t>().data();
    const int64_t K = max_objects_;
    kept->clear();
    int64_t valid = 0;
    for (int64_t n = 0; n < count; ++n) {
      const int64_t row = image * count + n;
      const double* box = boxes + row * 4;
      // tf.clip_by_value: minimum with the upper bound, then maximum with 0
      const double x1 = std::max(std::min(box[0], max_x_), 0.0);
      const double y1 = std::max(std::min(box[1], max_y_), 0.0);
      const double x2 = std::max(std::min(box[2], max_x_), 0.0);
      const double y2 = std::max(std::min(box[3], max_y_), 0.0);
      const double box_w = x2 - x1, box_h = y2 - y1;
      if (!(box_w > 0.0 && box_h > 0.0)) continue;  // no area (or NaN): no slot
      const int64_t slot = valid++;
      if (slot >= K) continue;  // counted in num_dropped
      const double centre_x = (x1 + x2) / 2, centre_y = (y1 + y2) / 2;
      const double int_x = std::floor(centre_x), int_y = std::floor(centre_y);
      const int64_t at = image * K + slot;
      out.wh[2 * at] = static_cast<float>(box_w);
      out.wh[2 * at + 1] = static_cast<float>(box_h);
      out.reg[2 * at] = static_cast<float>(centre_x - int_x);
      out.reg[2 * at + 1] = static_cast<float>(centre_y - int_y);
      const int64_t cx = static_cast<int64_t>(int_x), cy = static_cast<int64_t>(int_y);
      out.ind[at] = static_cast<int32_t>(cy * width_ + cx);
      out.mask[at] = 1.0f;
      kept->push_back({x1, y1, x2, y2, cx, cy, labels[row], row});
    }
    out.dropped[image] = static_cast<int32_t>(std::max<int64_t>(valid - K, 0));
  }

  // The window of radii (rx, ry) around `object`'s centre, clipped to the grid; an error when
  // a radius lies beyond the Gaussian table.
  absl::Status MakeWindow(const Object& object, int64_t rx, int64_t ry, const Gaussian& table,
                          Window* window) const {
    if (rx >= table.side || ry >= table.side) {
      return absl::InternalError("render_targets: radius beyond the Gaussian table");
    }
    *window = {std::max<int64_t>(object.cx - rx, 0),
               std::min<int64_t>(object.cx + rx, width_ - 1),
               std::max<int64_t>(object.cy - ry, 0),
               std::min<int64_t>(object.cy + ry, height_ - 1),
               object.cx, object.cy, object.label,
               table.data + rx * table.side, table.data + ry * table.side};
    return absl::OkStatus();
  }

  // Image `image`'s heatmap [H, W, C], row by row: the windows crossing a row are drawn into a
  // zeroed row that stays in the cache (each cell the maximum of its class's windows), which
  // then goes out in one pass. `row` and `zeros` hold W * C floats each.
  void DrawHeatmap(const std::vector<Window>& windows, int64_t image, float* heatmap,
                   std::vector<float>* row, const std::vector<float>& zeros) const {
    const int64_t row_length = width_ * num_classes_;
    for (int64_t y = 0; y < height_; ++y) {
      bool drawn = false;
      for (const Window& window : windows) {
        if (y < window.y0 || y > window.y1) continue;
        if (!drawn) {
          std::memset(row->data(), 0, sizeof(float) * row_length);
          drawn = true;
        }
        const float along_y = window.factor_y[std::abs(y - window.cy)];
        float* cell = row->data() + window.x0 * num_classes_ + window.label;
        for (int64_t x = window.x0; x <= window.x1; ++x, cell += num_classes_) {
          const float value = along_y * window.factor_x[std::abs(x - window.cx)];
          if (value > *cell) *cell = value;
        }
      }
      stream_row_(heatmap + (image * height_ + y) * row_length,
                  drawn ? row->data() : zeros.data(), row_length);
    }
  }

  int64_t height_, width_, num_classes_, max_objects_;
  bool clip_to_edge_;
  double max_x_, max_y_;
  StreamRow stream_row_;
};

class CenternetTargetsOp : public TargetsKernel {
 public:
  using TargetsKernel::TargetsKernel;

  void Compute(OpKernelContext* ctx) override {
    int64_t batch, count;
    Centre out;
    Gaussian table;
    OP_REQUIRES_OK(ctx, Prepare(ctx, 3, &batch, &count, &out, &table));
    const Tensor& radius_in = ctx->input(2);
    OP_REQUIRES(ctx, radius_in.dims() == 2 && radius_in.dim_size(0) == max_y_ + 1 &&
                         radius_in.dim_size(1) == max_x_ + 1,
                absl::InvalidArgumentError("render_targets: radius table of the wrong shape"));
    const int32_t* radius_table = radius_in.flat<int32_t>().data();
    const int64_t radius_columns = static_cast<int64_t>(max_x_) + 1;

    std::vector<float> row(width_ * num_classes_), zeros(width_ * num_classes_, 0.0f);
    std::vector<Object> kept;
    std::vector<Window> windows;
    for (int64_t image = 0; image < batch; ++image) {
      Keep(ctx, image, count, out, &kept);
      windows.resize(kept.size());
      for (size_t i = 0; i < kept.size(); ++i) {
        const Object& object = kept[i];
        // ceil of a clipped size is in 0..max: inside the table by construction
        const int64_t r =
            radius_table[static_cast<int64_t>(std::ceil(object.y2 - object.y1)) * radius_columns +
                         static_cast<int64_t>(std::ceil(object.x2 - object.x1))];
        OP_REQUIRES_OK(ctx, MakeWindow(object, r, r, table, &windows[i]));
      }
      DrawHeatmap(windows, image, out.heatmap, &row, zeros);
    }
    StreamFence();  // the streamed rows are visible before the op completes
  }
};

// TTFNet's targets (render_ttf_targets_batch): the heatmap from elliptical windows of radii
// floor(alpha * w / 2), floor(alpha * h / 2); the box regression from windows with beta, painted
// largest area first (input order among equals) so that a cell keeps the smallest, latest
// object covering it, as the TensorFlow ops' highest rank: its box, and the weight
// (G[ry][|dy|] * G[rx][|dx|]) * float32(log_area / ((sum of the window's G[ry]) (sum of its
// G[rx]))), the sums over the window's rows and columns inside the grid in float64 (exact).
class TtfnetTargetsOp : public TargetsKernel {
 public:
  explicit TtfnetTargetsOp(OpKernelConstruction* ctx) : TargetsKernel(ctx) {
    int64_t stride;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("stride", &stride));
    stride_sq_ = static_cast<double>(stride * stride);
  }

  void Compute(OpKernelContext* ctx) override {
    int64_t batch, count;
    Centre out;
    Gaussian table;
    OP_REQUIRES_OK(ctx, Prepare(ctx, 4, &batch, &count, &out, &table));
    const Tensor& log_area_in = ctx->input(2);
    const Tensor& fractions_in = ctx->input(3);
    OP_REQUIRES(ctx, log_area_in.dims() == 2 && log_area_in.dim_size(0) == batch &&
                         log_area_in.dim_size(1) == count,
                absl::InvalidArgumentError("render_targets: log_area must be [B, N] like boxes"));
    OP_REQUIRES(ctx, fractions_in.NumElements() == 2,
                absl::InvalidArgumentError("render_targets: fractions must be (alpha, beta)"));
    const double* log_area = log_area_in.flat<double>().data();
    const double alpha = fractions_in.flat<double>()(0), beta = fractions_in.flat<double>()(1);
    const int64_t H = height_, W = width_;
    Tensor *target_out, *weight_out;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(6, TensorShape({batch, H, W, 4}), &target_out));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(7, TensorShape({batch, H, W}), &weight_out));
    float* box_target = target_out->flat<float>().data();
    float* box_weight = weight_out->flat<float>().data();
    std::memset(box_target, 0, sizeof(float) * target_out->NumElements());
    std::memset(box_weight, 0, sizeof(float) * weight_out->NumElements());

    std::vector<float> row(W * num_classes_), zeros(W * num_classes_, 0.0f);
    std::vector<Object> kept;
    std::vector<Window> windows;
    std::vector<double> area;
    std::vector<size_t> order;
    for (int64_t image = 0; image < batch; ++image) {
      Keep(ctx, image, count, out, &kept);
      windows.resize(kept.size());
      area.resize(kept.size());
      for (size_t i = 0; i < kept.size(); ++i) {
        const Object& object = kept[i];
        const double box_w = object.x2 - object.x1, box_h = object.y2 - object.y1;
        area[i] = box_w * box_h * stride_sq_;
        OP_REQUIRES_OK(ctx, MakeWindow(object, Radius(alpha, box_w), Radius(alpha, box_h),
                                       table, &windows[i]));
      }
      DrawHeatmap(windows, image, out.heatmap, &row, zeros);

      order.resize(kept.size());
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&area](size_t a, size_t b) { return area[a] > area[b]; });
      for (const size_t i : order) {
        const Object& object = kept[i];
        Window window;
        OP_REQUIRES_OK(ctx, MakeWindow(object, Radius(beta, object.x2 - object.x1),
                                       Radius(beta, object.y2 - object.y1), table, &window));
        double sum_x = 0.0, sum_y = 0.0;
        for (int64_t x = window.x0; x <= window.x1; ++x) {
          sum_x += window.factor_x[std::abs(x - window.cx)];
        }
        for (int64_t y = window.y0; y <= window.y1; ++y) {
          sum_y += window.factor_y[std::abs(y - window.cy)];
        }
        const float scale = static_cast<float>(log_area[object.row] / (sum_y * sum_x));
        const float corners[4] = {static_cast<float>(object.x1), static_cast<float>(object.y1),
                                  static_cast<float>(object.x2), static_cast<float>(object.y2)};
        for (int64_t y = window.y0; y <= window.y1; ++y) {
          const float along_y = window.factor_y[std::abs(y - window.cy)];
          const int64_t first = (image * H + y) * W;
          for (int64_t x = window.x0; x <= window.x1; ++x) {
            std::memcpy(box_target + 4 * (first + x), corners, sizeof(corners));
            box_weight[first + x] = (along_y * window.factor_x[std::abs(x - window.cx)]) * scale;
          }
        }
      }
    }
    StreamFence();  // the streamed rows are visible before the op completes
  }

 private:
  // floor(fraction * size / 2): a window's radius along one axis
  static int64_t Radius(double fraction, double size) {
    return static_cast<int64_t>(std::floor(fraction * size / 2));
  }

  double stride_sq_;
};

REGISTER_KERNEL_BUILDER(Name("CenternetTargets").Device(::tensorflow::DEVICE_CPU),
                        CenternetTargetsOp);
REGISTER_KERNEL_BUILDER(Name("TtfnetTargets").Device(::tensorflow::DEVICE_CPU), TtfnetTargetsOp);

}  // namespace centernet

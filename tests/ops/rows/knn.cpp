// The op table's rows of k-nearest-neighbour top-k (see tests/ops/op_table.cpp for the tolerances).
#include "rows.hpp"

namespace geoloc::optest::rows {

// ---------------------------------------------------------------- k-NN
void knn_rows(Table& t) {
  struct KnnCase {
    int64_t m, r, d;
    int k;
    KnnMetric metric;
    int64_t chunk;
    int dup;  // refs[j] = refs[j % dup] for j >= dup (exact ties); 0 = none
    const char* note;
  };
  const KnnCase cases[] = {
      {5, 19, 7, 4, KnnMetric::InnerProduct, 0, 6, "ties"},
      {5, 19, 7, 4, KnnMetric::L2, 7, 6, "ties, chunk 7"},
      {3, 5, 4, 8, KnnMetric::InnerProduct, 0, 0, "k > R: -1 / -inf padding"},
      {3, 5, 4, 8, KnnMetric::L2, 2, 0, "k > R: -1 / +inf padding, chunk 2"},
      {33, 1000, 37, 10, KnnMetric::InnerProduct, 0, 0, "odd sizes"},
      {2, 1500, 8, kKnnMaxK, KnnMetric::L2, 0, 300, "k = kKnnMaxK, ties"},
      {32, 20000, 128, 10, KnnMetric::InnerProduct, 0, 0, "bench"},
  };
  for (const KnnCase& kc : cases) {
    const int64_t m = kc.m, r = kc.r, dd = kc.d;
    const int k = kc.k;
    const KnnMetric metric = kc.metric;
    const int64_t chunk = kc.chunk;
    const int dup = kc.dup;
    const bool ip = metric == KnnMetric::InnerProduct;
    const uint32_t sd = t.seeds(2);
    t.add(
         "knn_topk",
         "q " + std::to_string(m) + "x" + std::to_string(dd) + " refs " + std::to_string(r) + " k " + std::to_string(k) +
             (ip ? " inner product" : " L2") + " (" + kc.note + ")",
         {{"scores", 1e-5f, 1e-5f, false}, {"index"}},
         [=] {
           Tensor q = quantised({m, dd}, sd), refs = quantised({r, dd}, sd + 1);
           float* R = refs.data<float>();
           if (dup)
             for (int64_t j = dup; j < r; ++j) std::copy_n(R + (j % dup) * dd, dd, R + j * dd);
           return V{q, refs};
         },
         [=](const V& in, Device d, int j) {
           Tensor q = on(in[0], d), refs = on(in[1], d), sc = J({m, k}, d, j), ix = J({m, k}, d, j, DType::I32);
           return Launch{{sc, ix}, [=] { GEOLOC_DISPATCH(d, knn_topk, q, refs, k, metric, sc, ix, chunk); }};
         },
         (ip ? 2.0 : 3.0) * m * r * dd, 4.0 * (m * dd + r * dd + 2 * m * k))
        .reference = [=](const V& in, const V& out) -> std::string {
      const auto q = in[0].to_vector(), R = in[1].to_vector();
      const auto sc = out[0].to_vector();
      const auto ix = out[1].to_labels();
      std::vector<std::pair<double, int32_t>> s(static_cast<size_t>(r));
      for (int64_t i = 0; i < m; ++i) {
        for (int64_t j = 0; j < r; ++j) {
          double v = 0;
          for (int64_t e = 0; e < dd; ++e) {
            const double a = q[i * dd + e], b = R[j * dd + e];
            v += ip ? a * b : (a - b) * (a - b);
          }
          s[j] = {ip ? -v : v, static_cast<int32_t>(j)};  // ascending = best first; ties by smaller index
        }
        std::sort(s.begin(), s.end());
        for (int e = 0; e < k; ++e) {
          const size_t o = static_cast<size_t>(i * k + e);
          const bool pad = e >= r;
          const int32_t want_i = pad ? -1 : s[e].second;
          const double want_s = pad ? (ip ? -INFINITY : INFINITY) : (ip ? -s[e].first : s[e].first);
          if (ix[o] != want_i || static_cast<double>(sc[o]) != want_s) {
            std::ostringstream os;
            os << "query " << i << " rank " << e << ": index " << ix[o] << " score " << sc[o] << ", brute force " << want_i
               << " score " << want_s;
            return os.str();
          }
        }
      }
      return "";
    };
  }
}

}  // namespace geoloc::optest::rows

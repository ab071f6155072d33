// FAISS at scale (issue #20, docs/scaling.md): build time, memory, queries/s and recall@10 against exact
// search, on synthetic clustered embeddings, through geoloc's own FAISS wrapper (src/pipeline/faiss_index.hpp,
// the code KnnIndex searches with). A plain program in three steps, so that each step's peak memory is
// its own (tools/faiss_benchmark.sh runs them):
//
//   geoloc_bench_faiss truth  --dim D --n N [--queries 1000] [--seed 1] --out truth.bin
//       exact top-10 of every query by brute force (Eigen GEMM over chunks of generated rows)
//   geoloc_bench_faiss build  --dim D --n N --spec SPEC [--train 262144] [--seed 1] --out index.faiss
//       trains on the first rows, adds all N in chunks (never holding them all), writes the index
//   geoloc_bench_faiss search --dim D --index index.faiss --truth truth.bin --params "nprobe=8;nprobe=16"
//       per parameter set: queries/s of batched searches (all queries per call) and recall@10; also
//       queries_per_s_cpu = queries per CPU second x threads, the rate on that many otherwise idle cores
//
// Every step prints one JSON line per result. --threads (default 2) sets geoloc's pool, hence FAISS's
// OpenMP threads. The data: K = 256 cluster centres uniform on the unit sphere of R^D; row i lies in
// cluster c(i) (a hash of i) at normalise(mu_c + 0.6 P h + 0.1 n), h ~ N(0, I_32)/sqrt(32) in a 32-
// dimensional subspace P shared by all clusters, n ~ N(0, I_D)/sqrt(D) isotropic noise: an intrinsic
// dimension of about 32, as measured for image embeddings, whatever D. Row i is a pure function of
// (seed, i), so every step regenerates the same rows; queries are rows of another stream.
#include <sys/resource.h>

#include <Eigen/Core>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <queue>
#include <sstream>
#include <string>
#include <vector>

#include "geoloc/error.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/thread_pool.hpp"
#include "pipeline/faiss_index.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kClusters = 256, kLatent = 32, kTop = 10;
constexpr uint64_t kQueryStream = 0x5157e5ULL;  // queries: rows of another stream

uint64_t splitmix(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
// Approximately N(0, 1): four 16-bit uniforms summed (Irwin-Hall), centred and scaled to unit variance.
float gauss(uint64_t& s) {
  const uint64_t r = splitmix(s);
  const float u = static_cast<float>((r & 0xFFFF) + ((r >> 16) & 0xFFFF) + ((r >> 32) & 0xFFFF) + (r >> 48)) / 65536.0f;
  return (u - 2.0f) * 1.7320508f;
}

// The generator: centres and the shared subspace, from the seed.
struct Generator {
  int64_t d;
  uint64_t seed;
  std::vector<float> centres;  // [K, d], unit rows
  std::vector<float> basis;    // [kLatent, d], entries N(0, 1/d)
  Generator(int64_t dim, uint64_t s) : d(dim), seed(s) {
    uint64_t st = seed * 0x2545F4914F6CDD1DULL + 17;
    centres.resize(static_cast<size_t>(kClusters * d));
    for (int c = 0; c < kClusters; ++c) {
      double n = 0;
      for (int64_t j = 0; j < d; ++j) n += std::pow(centres[c * d + j] = gauss(st), 2);
      for (int64_t j = 0; j < d; ++j) centres[c * d + j] /= static_cast<float>(std::sqrt(n));
    }
    basis.resize(static_cast<size_t>(kLatent * d));
    for (auto& b : basis) b = gauss(st) / std::sqrt(static_cast<float>(d));
  }
  // Rows [r0, r0 + n) of `stream` into out [n, d], on geoloc's pool.
  void rows(uint64_t stream, int64_t r0, int64_t n, float* out) const {
    geoloc::parallel_for(static_cast<size_t>(n), 256, [&](size_t i) {
      const uint64_t row = static_cast<uint64_t>(r0) + i;
      uint64_t st = (seed ^ (stream * 0xD1B54A32D192ED03ULL)) + row * 0x9E3779B97F4A7C15ULL;
      splitmix(st);
      const int c = static_cast<int>(splitmix(st) % kClusters);
      float* x = out + static_cast<int64_t>(i) * d;
      const float* mu = centres.data() + c * d;
      const float noise = 0.1f / std::sqrt(static_cast<float>(d));
      for (int64_t j = 0; j < d; ++j) x[j] = mu[j] + noise * gauss(st);
      for (int k = 0; k < kLatent; ++k) {
        const float h = 0.6f * gauss(st) / std::sqrt(static_cast<float>(kLatent));
        const float* b = basis.data() + k * d;
        for (int64_t j = 0; j < d; ++j) x[j] += h * b[j];
      }
      double nn = 0;
      for (int64_t j = 0; j < d; ++j) nn += static_cast<double>(x[j]) * x[j];
      const float inv = static_cast<float>(1.0 / std::sqrt(nn));
      for (int64_t j = 0; j < d; ++j) x[j] *= inv;
    });
  }
};

// /proc/self/status: peak and current resident memory in MiB.
double status_mib(const char* key) {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind(key, 0) == 0) return std::strtod(line.c_str() + std::strlen(key), nullptr) / 1024.0;
  return -1;
}

double seconds(Clock::time_point a) { return std::chrono::duration<double>(Clock::now() - a).count(); }

// CPU seconds of the whole process (every thread): with other work on the machine, wall-clock rates fall
// while the CPU time per query stays, so both are reported.
double cpu_seconds() {
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Options {
  std::map<std::string, std::string> v;
  std::string get(const std::string& k, const std::string& fallback = "") const {
    auto it = v.find(k);
    if (it != v.end()) return it->second;
    GEOLOC_CHECK(!fallback.empty(), geoloc::ValueError, "missing --", k);
    return fallback;
  }
  int64_t num(const std::string& k, const std::string& fallback = "") const { return std::stoll(get(k, fallback)); }
};

struct TruthHeader {
  char magic[8] = {'g', 'l', 'f', 't', 'r', 'u', 't', 'h'};
  int64_t dim = 0, n = 0, queries = 0, k = kTop;
  uint64_t seed = 0;
};

int truth(const Options& o) {
  TruthHeader h;
  h.dim = o.num("dim");
  h.n = o.num("n");
  h.queries = o.num("queries", "1000");
  h.seed = static_cast<uint64_t>(o.num("seed", "1"));
  const Generator gen(h.dim, h.seed);
  const auto t0 = Clock::now();
  std::vector<float> q(static_cast<size_t>(h.queries * h.dim));
  gen.rows(kQueryStream, 0, h.queries, q.data());
  using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Mat> Q(q.data(), h.queries, h.dim);
  // per query a min-heap of its best kTop (score, row)
  using Item = std::pair<float, int64_t>;
  std::vector<std::priority_queue<Item, std::vector<Item>, std::greater<Item>>> best(static_cast<size_t>(h.queries));
  const int64_t chunk = 16384;
  std::vector<float> rows(static_cast<size_t>(chunk * h.dim));
  for (int64_t r0 = 0; r0 < h.n; r0 += chunk) {
    const int64_t m = std::min(chunk, h.n - r0);
    gen.rows(0, r0, m, rows.data());
    const Eigen::Map<const Mat> R(rows.data(), m, h.dim);
    const int64_t blocks = 16;  // query blocks spread over the pool
    geoloc::parallel_for(static_cast<size_t>(blocks), 1, [&](size_t b) {
      const int64_t q0 = h.queries * static_cast<int64_t>(b) / blocks, q1 = h.queries * static_cast<int64_t>(b + 1) / blocks;
      if (q1 <= q0) return;
      const Mat S = Q.middleRows(q0, q1 - q0) * R.transpose();
      for (int64_t i = q0; i < q1; ++i) {
        auto& heap = best[static_cast<size_t>(i)];
        const float* s = S.data() + (i - q0) * m;
        for (int64_t j = 0; j < m; ++j) {
          if (static_cast<int64_t>(heap.size()) < kTop) {
            heap.emplace(s[j], r0 + j);
          } else if (s[j] > heap.top().first) {
            heap.pop();
            heap.emplace(s[j], r0 + j);
          }
        }
      }
    });
  }
  std::ofstream out(o.get("out"), std::ios::binary);
  out.write(reinterpret_cast<const char*>(&h), sizeof h);
  for (auto& heap : best) {
    std::vector<int64_t> ids;
    while (!heap.empty()) {
      ids.push_back(heap.top().second);
      heap.pop();
    }
    std::reverse(ids.begin(), ids.end());
    out.write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * sizeof(int64_t)));
  }
  GEOLOC_CHECK(out.good(), geoloc::IoError, "cannot write ", o.get("out"));
  std::printf("{\"step\":\"truth\",\"dim\":%lld,\"n\":%lld,\"queries\":%lld,\"seconds\":%.1f,\"peak_rss_mib\":%.0f}\n",
              static_cast<long long>(h.dim), static_cast<long long>(h.n), static_cast<long long>(h.queries), seconds(t0),
              status_mib("VmHWM:"));
  return 0;
}

int build(const Options& o) {
  const int64_t d = o.num("dim"), n = o.num("n"), train = std::min(o.num("train", "262144"), n);
  const std::string spec = o.get("spec"), path = o.get("out");
  const Generator gen(d, static_cast<uint64_t>(o.num("seed", "1")));
  geoloc::pipeline::FaissIndex index(spec, d);
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds();
  double train_s = 0;
  const bool trained = index.needs_training();
  if (trained) {
    std::vector<float> x(static_cast<size_t>(train * d));
    gen.rows(0, 0, train, x.data());  // rows are independent draws: the first ones are a random sample
    const auto t = Clock::now();
    index.train(train, x.data());
    train_s = seconds(t);
  }
  const int64_t chunk = 262144;
  std::vector<float> x(static_cast<size_t>(std::min(chunk, n) * d));
  double gen_s = 0, gen_cpu = 0;
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t m = std::min(chunk, n - r0);
    const auto g = Clock::now();
    const double gc = cpu_seconds();
    gen.rows(0, r0, m, x.data());
    gen_s += seconds(g);
    gen_cpu += cpu_seconds() - gc;
    index.add(m, x.data());
  }
  index.finish();  // what KnnIndex does (IVF: the row map of the restricted search)
  const double total = seconds(t0) - gen_s, total_cpu = cpu_seconds() - c0 - gen_cpu;
  std::vector<float>().swap(x);
  index.write_file(path);
  std::printf("{\"step\":\"build\",\"spec\":\"%s\",\"dim\":%lld,\"n\":%lld,\"train_rows\":%lld,\"train_s\":%.1f,"
              "\"build_s\":%.1f,\"build_cpu_s\":%.1f,\"peak_rss_mib\":%.0f,\"file_mib\":%.0f}\n",
              spec.c_str(), static_cast<long long>(d), static_cast<long long>(n),
              static_cast<long long>(trained ? train : 0), train_s, total, total_cpu, status_mib("VmHWM:"),
              static_cast<double>(std::filesystem::file_size(path)) / (1 << 20));
  return 0;
}

int search(const Options& o) {
  const int64_t d = o.num("dim");
  TruthHeader h;
  std::ifstream tf(o.get("truth"), std::ios::binary);
  tf.read(reinterpret_cast<char*>(&h), sizeof h);
  GEOLOC_CHECK(tf.good() && std::memcmp(h.magic, "glftruth", 8) == 0 && h.dim == d, geoloc::IoError, o.get("truth"),
               ": not a truth file for dimension ", d);
  std::vector<int64_t> exact(static_cast<size_t>(h.queries * kTop));
  tf.read(reinterpret_cast<char*>(exact.data()), static_cast<std::streamsize>(exact.size() * sizeof(int64_t)));
  const Generator gen(d, h.seed);
  std::vector<float> q(static_cast<size_t>(h.queries * d));
  gen.rows(kQueryStream, 0, h.queries, q.data());
  const auto t0 = Clock::now();
  auto index = geoloc::pipeline::FaissIndex::read_file(o.get("index"), 0, 0, o.get("index"), o.get("spec", "?"));
  index->finish();
  const double load_s = seconds(t0), rss_loaded = status_mib("VmRSS:");
  GEOLOC_CHECK(index->size() == h.n, geoloc::IoError, "the index has ", index->size(), " rows, the truth ", h.n);
  const double min_time = std::stod(o.get("min-time", "2"));
  std::vector<float> scores(static_cast<size_t>(h.queries * kTop));
  std::vector<int64_t> rows(static_cast<size_t>(h.queries * kTop));
  std::stringstream sets(o.get("params", "-"));
  for (std::string p; std::getline(sets, p, ';');) {
    if (p != "-" && !p.empty()) index->set_params(p);
    index->search(h.queries, q.data(), kTop, scores.data(), rows.data());  // warm-up, and the recall
    int64_t hit = 0;
    for (int64_t i = 0; i < h.queries; ++i)
      for (int j = 0; j < kTop; ++j)
        hit += std::count(exact.begin() + i * kTop, exact.begin() + (i + 1) * kTop, rows[static_cast<size_t>(i * kTop + j)]);
    int64_t done = 0;
    const auto t = Clock::now();
    const double c = cpu_seconds();
    do {
      index->search(h.queries, q.data(), kTop, scores.data(), rows.data());
      done += h.queries;
    } while (seconds(t) < min_time);
    const double qps = static_cast<double>(done) / seconds(t);
    const double qps_cpu = static_cast<double>(done) / (cpu_seconds() - c) * geoloc::num_threads();
    std::printf("{\"step\":\"search\",\"index\":\"%s\",\"dim\":%lld,\"n\":%lld,\"params\":\"%s\",\"queries_per_s\":%.0f,"
                "\"queries_per_s_cpu\":%.0f,\"recall_at_10\":%.4f,\"load_s\":%.1f,\"rss_loaded_mib\":%.0f,\"peak_rss_mib\":%.0f,\"threads\":%d}\n",
                o.get("spec", o.get("index")).c_str(), static_cast<long long>(d), static_cast<long long>(h.n),
                index->params().c_str(), qps, qps_cpu, static_cast<double>(hit) / static_cast<double>(h.queries * kTop), load_s,
                rss_loaded, status_mib("VmHWM:"), geoloc::num_threads());
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    GEOLOC_CHECK(argc >= 2, geoloc::ValueError, "usage: geoloc_bench_faiss truth|build|search --key value ...");
    const std::string step = argv[1];
    Options o;
    for (int i = 2; i + 1 < argc; i += 2) {
      GEOLOC_CHECK(std::strncmp(argv[i], "--", 2) == 0, geoloc::ValueError, "expected --key value, got ", argv[i]);
      o.v[argv[i] + 2] = argv[i + 1];
    }
    GEOLOC_CHECK(geoloc::pipeline::faiss_available() || step == "truth", geoloc::ValueError,
                 "this geoloc was built without FAISS");
    geoloc::set_num_threads(static_cast<int>(o.num("threads", "2")));
    if (step == "truth") return truth(o);
    if (step == "build") return build(o);
    if (step == "search") return search(o);
    throw geoloc::ValueError("unknown step '" + step + "' (truth, build or search)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "geoloc_bench_faiss: %s\n", e.what());
    return 1;
  }
}

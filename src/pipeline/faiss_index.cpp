// geoloc's wrapper around FAISS (faiss_index.hpp). Every FAISS type and exception stays in this file:
// FAISS's exceptions become geoloc's ValueError (a spec, a parameter or training data FAISS refuses) or
// IoError (an index file it cannot read), with FAISS's reason and without its C++ signatures.
#include "faiss_index.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <regex>
#include <sstream>

#include "geoloc/atomic_file.hpp"
#include "geoloc/error.hpp"
#include "geoloc/pipeline/knn.hpp"
#include "geoloc/thread_pool.hpp"

#ifdef GEOLOC_HAS_FAISS
#include <faiss/AutoTune.h>
#include <faiss/IVFlib.h>
#include <faiss/Index.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/FaissException.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>
#if __has_include(<omp.h>)
#include <omp.h>
#define GEOLOC_FAISS_OMP 1
#endif
#endif

namespace geoloc::pipeline {

namespace {

// "nprobe=32,efSearch=64" -> {name: value}; ValueError for anything else.
std::map<std::string, double> parse_params(const std::string& s) {
  std::map<std::string, double> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    GEOLOC_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), ValueError, "FAISS search parameter '",
                 item, "' is not name=value (e.g. nprobe=32, efSearch=64, k_factor_rf=4)");
    const std::string name = item.substr(0, eq), value = item.substr(eq + 1);
    char* end = nullptr;
    const double v = std::strtod(value.c_str(), &end);
    GEOLOC_CHECK(end && *end == '\0' && std::isfinite(v) && v >= 0.0, ValueError, "FAISS search parameter ", name,
                 ": '", value, "' is not a non-negative number");
    const bool count = name == "nprobe" || name == "efSearch" || name == "k_factor_rf" || name == "k_factor" ||
                       name.rfind("quantizer_", 0) == 0;
    GEOLOC_CHECK(!count || (v >= 1.0 && v == std::floor(v) && v <= 1e9), ValueError, "FAISS search parameter ", name,
                 " must be a whole number >= 1, got ", value);
    out[name] = v;
  }
  return out;
}

std::string format_value(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

}  // namespace

std::string FaissIndex::params() const {
  std::string s;
  for (const auto& [k, v] : params_) s += (s.empty() ? "" : ",") + k + "=" + format_value(v);
  return s;
}

#ifdef GEOLOC_HAS_FAISS

static_assert(std::is_same_v<faiss::Index::idx_t, int64_t>, "FAISS ids are 64-bit");

bool faiss_available() { return true; }

void sync_faiss_threads() {
#ifdef GEOLOC_FAISS_OMP
  omp_set_num_threads(std::max(1, num_threads()));
#endif
}

namespace {

// FAISS's messages read "Error in <signature> at <file>:<line>: <reason>": the reason alone.
std::string reason(const std::exception& e) {
  const std::string s = e.what();
  static const std::regex where(R"( at [^ ]+:[0-9]+: )");
  std::smatch m;
  return std::regex_search(s, m, where) ? std::string(m.suffix()) : s;
}

// Reads `left` bytes of an open file, no more: a truncated index ends in FAISS's read error.
struct RangeReader : faiss::IOReader {
  std::FILE* f = nullptr;
  uint64_t left = 0;
  size_t operator()(void* ptr, size_t size, size_t nitems) override {
    if (size == 0 || nitems == 0) return 0;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(nitems, left / size));
    const size_t got = std::fread(ptr, size, n, f);
    left -= static_cast<uint64_t>(got) * size;
    return got;
  }
};

struct StreamWriter : faiss::IOWriter {
  std::ostream* os = nullptr;
  size_t operator()(const void* ptr, size_t size, size_t nitems) override {
    os->write(static_cast<const char*>(ptr), static_cast<std::streamsize>(size * nitems));
    return os->good() ? nitems : 0;
  }
};

}  // namespace

struct FaissIndex::Impl {
  std::unique_ptr<faiss::Index> index;
};

FaissIndex::FaissIndex(const std::string& spec, int64_t dim) : impl_(std::make_unique<Impl>()), spec_(spec) {
  GEOLOC_CHECK(!spec.empty(), ValueError, "FAISS: empty index spec (e.g. Flat, HNSW32, IVF4096,SQ8, IVF4096,PQ32)");
  GEOLOC_CHECK(dim >= 1 && dim <= (1 << 20), ValueError, "FAISS: dimension ", dim, " out of range");
  try {
    impl_->index.reset(faiss::index_factory(static_cast<int>(dim), spec.c_str(), faiss::METRIC_INNER_PRODUCT));
  } catch (const faiss::FaissException& e) {
    throw ValueError("FAISS cannot make an index of '" + spec + "' (dimension " + std::to_string(dim) + "): " +
                     reason(e));
  }
}

FaissIndex::~FaissIndex() = default;

int64_t FaissIndex::dim() const { return impl_->index->d; }
int64_t FaissIndex::size() const { return impl_->index->ntotal; }
bool FaissIndex::needs_training() const { return !impl_->index->is_trained; }

void FaissIndex::train(int64_t n, const float* x) {
  sync_faiss_threads();
  try {
    impl_->index->train(n, x);
  } catch (const faiss::FaissException& e) {
    throw ValueError("FAISS could not train '" + spec_ + "' on " + std::to_string(n) + " vectors: " + reason(e));
  }
}

void FaissIndex::add(int64_t n, const float* x) {
  GEOLOC_CHECK(impl_->index->is_trained, ValueError, "FAISS index '", spec_, "' must be trained before rows are added");
  sync_faiss_threads();
  try {
    impl_->index->add(n, x);
  } catch (const faiss::FaissException& e) {
    throw ValueError("FAISS could not add " + std::to_string(n) + " vectors to '" + spec_ + "': " + reason(e));
  }
}

void FaissIndex::finish() {
  if (faiss::IndexIVF* ivf = faiss::ivflib::try_extract_index_ivf(impl_->index.get()))
    if (ivf->direct_map.type == faiss::DirectMap::NoMap) ivf->make_direct_map(true);
}

void FaissIndex::set_params(const std::string& params) {
  faiss::ParameterSpace ps;
  for (auto [name, v] : parse_params(params)) {
    if (name == "nprobe")
      if (const faiss::IndexIVF* ivf = faiss::ivflib::try_extract_index_ivf(impl_->index.get()))
        v = std::min(v, static_cast<double>(ivf->nlist));
    try {
      ps.set_index_parameter(impl_->index.get(), name, v);
    } catch (const faiss::FaissException&) {
      throw ValueError("FAISS search parameter '" + name + "' does not apply to the index '" + spec_ +
                       "' (nprobe: IVF indexes, efSearch: HNSW, k_factor_rf: Refine)");
    }
    params_[name] = v;
  }
}

void FaissIndex::set_default_params() {
  for (const char* p : {"nprobe=16", "efSearch=64", "k_factor_rf=4"}) {
    try {
      set_params(p);
    } catch (const ValueError&) {
      // the index has no such parameter
    }
  }
}

void FaissIndex::search(int64_t n, const float* x, int k, float* scores, int64_t* rows) const {
  sync_faiss_threads();
  try {
    impl_->index->search(n, x, k, scores, rows);
  } catch (const faiss::FaissException& e) {
    throw ValueError("FAISS search in '" + spec_ + "' failed: " + reason(e));
  }
}

void FaissIndex::reconstruct(const int64_t* rows, int64_t n, float* out) const {
  const int64_t d = dim(), total = size();
  try {
    for (int64_t i = 0; i < n; ++i) {
      GEOLOC_CHECK(rows[i] >= 0 && rows[i] < total, ValueError, "FAISS: row ", rows[i], " outside the index (", total,
                   " rows)");
      impl_->index->reconstruct(rows[i], out + i * d);
    }
  } catch (const faiss::FaissException& e) {
    throw ValueError("FAISS index '" + spec_ + "' cannot give back its rows (the refine and rank strategies need them): " +
                     reason(e));
  }
}

std::vector<uint8_t> FaissIndex::serialize() const {
  faiss::VectorIOWriter w;
  try {
    faiss::write_index(impl_->index.get(), &w);
  } catch (const faiss::FaissException& e) {
    throw IoError("FAISS cannot serialise '" + spec_ + "': " + reason(e));
  }
  return std::move(w.data);
}

void FaissIndex::write_file(const std::string& path) const {
  write_file_atomic(path, [&](std::ostream& os) {
    StreamWriter w;
    w.os = &os;
    try {
      faiss::write_index(impl_->index.get(), &w);
    } catch (const faiss::FaissException& e) {
      throw IoError("writing the FAISS index '" + path + "' failed: " + reason(e));
    }
  });
}

std::unique_ptr<FaissIndex> FaissIndex::read_file(const std::string& path, uint64_t offset, uint64_t size,
                                                  const std::string& label, const std::string& spec) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  GEOLOC_CHECK(f, IoError, "cannot open '", path, "': ", std::strerror(errno));
  GEOLOC_CHECK(std::fseek(f.get(), 0, SEEK_END) == 0, IoError, "cannot read '", path, "'");
  const long end = std::ftell(f.get());
  GEOLOC_CHECK(end >= 0 && offset <= static_cast<uint64_t>(end), IoError, label, ": the FAISS index lies outside the file");
  if (size == 0) size = static_cast<uint64_t>(end) - offset;
  GEOLOC_CHECK(offset + size <= static_cast<uint64_t>(end), IoError, label, ": the FAISS index lies outside the file");
  GEOLOC_CHECK(std::fseek(f.get(), static_cast<long>(offset), SEEK_SET) == 0, IoError, "cannot read '", path, "'");
  RangeReader r;
  r.f = f.get();
  r.left = size;
  std::unique_ptr<FaissIndex> out(new FaissIndex());
  out->impl_ = std::make_unique<Impl>();
  out->spec_ = spec;
  try {
    out->impl_->index.reset(faiss::read_index(&r));
  } catch (const faiss::FaissException& e) {
    throw IoError(label + ": not a readable FAISS index (" + reason(e) + ")");
  } catch (const std::bad_alloc&) {
    throw IoError(label + ": corrupt FAISS index (it claims more memory than there is)");
  } catch (const std::length_error&) {
    throw IoError(label + ": corrupt FAISS index (impossible sizes)");
  }
  GEOLOC_CHECK(r.left == 0, IoError, label, ": ", r.left, " bytes after the end of the FAISS index");
  GEOLOC_CHECK(out->impl_->index->metric_type == faiss::METRIC_INNER_PRODUCT, IoError, label,
               ": the FAISS index does not use the inner product (geoloc's indexes are cosine similarity)");
  return out;
}

#else  // built without FAISS: the same members, each saying so

bool faiss_available() { return false; }
void sync_faiss_threads() {}

namespace {
[[noreturn]] void no_faiss() {
  throw ValueError(
      "this geoloc was built without FAISS (libfaiss-dev not found, or GEOLOC_FAISS=OFF): install libfaiss-dev "
      "and configure again, or use an index built without --faiss (docs/scaling.md)");
}
}  // namespace

struct FaissIndex::Impl {};
FaissIndex::FaissIndex(const std::string&, int64_t) { no_faiss(); }
FaissIndex::~FaissIndex() = default;
int64_t FaissIndex::dim() const { no_faiss(); }
int64_t FaissIndex::size() const { no_faiss(); }
bool FaissIndex::needs_training() const { no_faiss(); }
void FaissIndex::train(int64_t, const float*) { no_faiss(); }
void FaissIndex::add(int64_t, const float*) { no_faiss(); }
void FaissIndex::finish() { no_faiss(); }
void FaissIndex::set_params(const std::string& params) {
  parse_params(params);
  no_faiss();
}
void FaissIndex::set_default_params() { no_faiss(); }
void FaissIndex::search(int64_t, const float*, int, float*, int64_t*) const { no_faiss(); }
void FaissIndex::reconstruct(const int64_t*, int64_t, float*) const { no_faiss(); }
std::vector<uint8_t> FaissIndex::serialize() const { no_faiss(); }
void FaissIndex::write_file(const std::string&) const { no_faiss(); }
std::unique_ptr<FaissIndex> FaissIndex::read_file(const std::string&, uint64_t, uint64_t, const std::string& label,
                                                  const std::string&) {
  throw IoError(label + " holds a FAISS index, but this geoloc was built without FAISS (libfaiss-dev not found, or "
                        "GEOLOC_FAISS=OFF): install libfaiss-dev and configure again (docs/scaling.md)");
}

#endif

}  // namespace geoloc::pipeline

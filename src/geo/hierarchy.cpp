#include "geoloc/geo/hierarchy.hpp"

#include <algorithm>

#include "geoloc/error.hpp"

namespace geoloc::geo {

Hierarchy::Hierarchy(std::span<const CellPartition> partitions) {
  GEOLOC_CHECK(!partitions.empty(), ValueError, "Hierarchy: no partitionings given");
  for (const CellPartition& p : partitions) sizes_.push_back(p.size());
  const CellPartition& finest = partitions.back();
  const std::size_t np = partitions.size();
  ancestors_.resize(finest.size() * np);
  for (std::size_t f = 0; f < finest.size(); ++f)
    for (std::size_t p = 0; p < np; ++p) ancestors_[f * np + p] = partitions[p].assign_cell(finest.cell(f).id);
}

std::vector<double> Hierarchy::scores(std::span<const std::span<const float>> probs) const {
  const std::size_t np = sizes_.size();
  GEOLOC_CHECK(probs.size() == np, ValueError, "Hierarchy::scores: ", probs.size(), " probability vectors for ", np,
               " partitionings");
  for (std::size_t p = 0; p < np; ++p)
    GEOLOC_CHECK(probs[p].size() == sizes_[p], ValueError, "Hierarchy::scores: partitioning ", p, " has ",
                 sizes_[p], " classes but ", probs[p].size(), " probabilities");
  std::vector<double> out(size(), 1.0);
  for (std::size_t f = 0; f < out.size(); ++f)
    for (std::size_t p = 0; p < np; ++p) {
      const int a = ancestors_[f * np + p];
      out[f] *= a >= 0 ? static_cast<double>(probs[p][a]) : 1.0 / static_cast<double>(sizes_[p]);
    }
  return out;
}

int Hierarchy::argmax(std::span<const std::span<const float>> probs) const {
  const std::vector<double> s = scores(probs);
  GEOLOC_CHECK(!s.empty(), ValueError, "Hierarchy::argmax: the finest partitioning has no cells");
  return static_cast<int>(std::max_element(s.begin(), s.end()) - s.begin());
}

}  // namespace geoloc::geo

#pragma once
// The back ends behind comm::create() (each file compiles to nothing where its library is not in the build),
// and what they share: waiting for a collective with a deadline.
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "geoloc/comm.hpp"

namespace geoloc::comm::detail {

/// MPI (src/comm/mpi.cpp); CommError where the build has no MPI.
std::unique_ptr<Communicator> make_mpi(const Options& o);
/// NCCL over MPI (src/comm/nccl.cpp); CommError where the build has no NCCL.
std::unique_ptr<Communicator> make_nccl(const Options& o);

/// Calls done() until it returns true: spinning, then yielding for the first millisecond, then with sleeps
/// growing to 0.2 ms (a rank waiting for a slower one should leave the core to the loader's threads). Past
/// `timeout_s` seconds (0 = never; checked at every call) throws CommError "<what> did not complete within
/// ... on <where>".
void poll_until(const std::function<bool()>& done, double timeout_s, const std::string& what, const std::string& where);

/// The CommError message of a collective that missed its deadline.
std::string timeout_message(const std::string& what, double timeout_s, const std::string& where);

}  // namespace geoloc::comm::detail

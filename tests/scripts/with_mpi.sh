#!/usr/bin/env bash
# Runs an MPI test when an MPI launcher is installed, otherwise reports it skipped (exit 77, CTest's
# SKIP_RETURN_CODE for these entries).
#   with_mpi.sh NP PROGRAM [ARGS...]   NP > 0: mpirun -np NP PROGRAM ...; NP = 0: PROGRAM itself, which
#                                      runs mpirun ($GEOLOC_MPIRUN) as it needs
# OpenMPI refuses to run as root (CI containers) unless told: OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM). Processes
# may outnumber the cores (--oversubscribe): the tests are about correctness, not speed.
set -euo pipefail
np=$1
shift
launcher=${GEOLOC_MPIRUN:-$(command -v mpirun || true)}
if [ -z "$launcher" ]; then
  echo "with_mpi: no mpirun found (install openmpi-bin): MPI test skipped"
  exit 77
fi
export GEOLOC_MPIRUN="$launcher"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# no network probing in containers without interfaces: shared memory between local processes
export OMPI_MCA_btl_base_warn_component_unused=0
if [ "$np" = 0 ]; then
  exec "$@" </dev/null
fi
# stdin from /dev/null: mpirun forwards its stdin to rank 0, and reading a terminal from a background
# job stops the whole process group (SIGTTIN)
exec "$launcher" --oversubscribe -np "$np" "$@" </dev/null

#!/usr/bin/env bash
# Base-to-new generalisation of any declared method on one dataset: per seed, train on the base
# half of the classes (SHOTS default 16) into OUTPUT/base2new/train_base/..., then test that model
# on the new half into OUTPUT/base2new/test_new/... STAGE=train or STAGE=test runs one half.
# Table: python parse_results.py OUTPUT/base2new --base2new
#   DATA=/path/to/datasets bash scripts/base2new.sh METHOD DATASET [SHOTS] [KEY VALUE ...]
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SCRIPT_USAGE="bash scripts/base2new.sh METHOD DATASET [SHOTS] [KEY VALUE ...]" experiment base2new "$@"

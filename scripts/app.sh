#!/usr/bin/env bash
# Quickstart command 1: set up, then open the workbench on http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec "${PYTHON:-python3}" -m streamlit run workbench "$@"

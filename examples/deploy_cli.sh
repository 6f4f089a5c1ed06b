#!/usr/bin/env bash
# modelhost deploy: a scikit-learn model file and then a folder with its own handler,
# each on an endpoint with one command; the second replaces the first blue/green.
#
#   MODELHOST_URL=http://127.0.0.1:8765 bash examples/deploy_cli.sh
set -euo pipefail
export MODELHOST_URL="${MODELHOST_URL:-http://127.0.0.1:8765}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-any}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-any}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python - "$work/iris.joblib" <<'PY'
import sys

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

features, labels = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=1000).fit(features, labels), sys.argv[1])
PY

modelhost deploy "$work/iris.joblib" --name example-cli
modelhost endpoints invoke example-cli --content-type text/csv --body "5.1,3.5,1.4,0.2"

mkdir -p "$work/v2/code"
cp "$work/iris.joblib" "$work/v2/model.joblib"
cat > "$work/v2/code/inference.py" <<'PY'
import json


def output_fn(prediction, accept):
    return json.dumps({"species": [int(p) for p in prediction]}), "application/json"
PY
echo "# the image's packages are enough" > "$work/v2/requirements.txt"

modelhost deploy "$work/v2" --name example-cli --update
modelhost endpoints invoke example-cli --content-type text/csv --body "5.1,3.5,1.4,0.2"
modelhost endpoints delete example-cli

# Two commands on a fresh machine (only Python 3.11+ needed); both build .venv from uv.lock first.
.PHONY: dev test sync bench clean-state

dev:    ## run the platform: embedded PostgreSQL + Dagster UI on http://127.0.0.1:3000
	python3 scripts/bootstrap.py dev

test:   ## run every quality gate: ruff, mypy, dg check defs, pytest on a real PostgreSQL
	python3 scripts/bootstrap.py test

sync:   ## only build the environment
	python3 scripts/bootstrap.py sync

bench:  ## run the benchmark (benchmarks/run.py; options in README "Performance")
	python3 scripts/bootstrap.py bench

clean-state:  ## stop the embedded server and delete local state (.elt/: database, Dagster home)
	-.venv/bin/elt db stop
	rm -rf .elt/postgres .elt/dagster_home .elt/run

# Set-up and the two everyday commands. Both work on a fresh Debian machine:
#   make demo   installs everything, runs both scenario suites, prints the metrics table
#   make test   installs everything, runs the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= runs/demo

.PHONY: setup demo test bench

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@if ! ldconfig -p | grep -q 'libusb-1.0.so.0'; then \
		echo "installing libusb-1.0 (needed by open3d)"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0; \
	fi
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,ray]'
	touch $@

demo: setup
	$(VENV)/bin/drivestack run highway urban --out $(OUT)

test: setup
	SDL_VIDEODRIVER=dummy $(VENV)/bin/python -m pytest -q

bench: setup
	$(PY) benchmarks/bench_sim.py
	$(PY) benchmarks/bench_planner.py
	$(PY) benchmarks/bench_sensors.py
	$(PY) benchmarks/bench_tracking.py

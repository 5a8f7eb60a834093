# The README's commands. Each target installs missing dependencies first, so a fresh
# Debian 12 clone needs nothing else.
JOBS ?= $(shell nproc)
CONFIG ?= examples/agentry.yaml
FUZZ_SECONDS ?= 20

.PHONY: deps configure build test run asan fuzz bench install-check clean

deps:
	@bash scripts/install-deps.sh

build/default/build.ninja: CMakeLists.txt CMakePresets.json | deps
	cmake --preset default

configure: deps
	cmake --preset default

build: configure
	cmake --build --preset default -j $(JOBS)

test: build
	ctest --preset default

run: build
	./build/default/apps/agentryd -c $(CONFIG)

asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan

fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS)
	bash scripts/run-fuzzers.sh build/fuzz $(FUZZ_SECONDS)

bench: build
	bash scripts/run-benchmarks.sh build/default

clean:
	rm -rf build

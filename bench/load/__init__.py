"""The repository's load harness (issue 15): an open-loop generator, a fake upstream and
the production shape of OneFlow between them. Run it with ``bench/load.sh``; how to read
its reports is in docs/performance.md."""

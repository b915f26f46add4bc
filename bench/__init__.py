"""xdpctl benchmarks (`make bench`): measurement only, no assertions.

Run with ``.venv/bin/python -m bench.run [--quick]``; results go to
bench/results/ (JSON plus ``latest.md``). See bench/README.md.
"""

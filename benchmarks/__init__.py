"""Benchmarks and the main job's report: speed against the peers' own code timed in the same run, the
study's tables, and generated demo data in the datasets' real layouts (:mod:`benchmarks.demo_data`).
Nothing in the library packages imports from here."""

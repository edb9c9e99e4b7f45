"""The benchmark behind ci/bench (standard library only); run as `python3 -m bench_lib` with
ci/ on sys.path, which ci/bench does.

  main.py        command line, machine description, runs the sections, writes the report
  procs.py       process groups, ports, running commands with a timeout, CPU pinning
  nginx.py       nginx.conf for each benchmark, nginx -t, starting nginx
  receiver.py    local probe target and webhook receiver (the alerting stays idle)
  loadgen.py     ab and wrk, and parsing their output
  callgrind.py   1. instructions per request
  throughput.py  2. throughput ratio
  scrape.py      3. scrape cost
  memory.py      4. shared memory per NAME
  probes.py      5. 1,000 TCP probe targets: threads, worker CPU, memory per target, p99
  report.py      report.md tables
"""

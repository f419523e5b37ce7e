"""Benchmark scripts of edge-ser (latency, footprint, streaming evaluation); never imported by edge_ser."""

"""The live classifier: frame sources, the pipelined capture -> infer -> overlay loop, overlays."""

"""The shapes captions benchmark (`docs/shapes-benchmark.md`): scene generator (`scenes`),
faithfulness scorer (`scorer`), its shape classifier (`classifier`) and pixel measures
(`pixels`)."""

"""Issue 10: crash safety, faults and load. The fast part runs in `make test`; the long part is marked
`reliability` (`make test-reliability`)."""

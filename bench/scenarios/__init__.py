"""One module per group of table sections; each returns `bench.common.Scenario`s."""

"""MLPerf's rules: the rounds, compliance tests, the submission tree and its checker."""

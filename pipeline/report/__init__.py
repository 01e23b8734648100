"""`newsletter report`: how each issue did and how the list grew, from the ledger (and the
provider events, when they are recorded), on a terminal or as one offline HTML file."""

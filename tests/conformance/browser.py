#!/usr/bin/env python3
"""A browser for the conformance suite's authorization server, which approves at once: it
follows the authorization URL's redirect back to codemode's loopback listener."""

import sys
import urllib.request

with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    response.read()

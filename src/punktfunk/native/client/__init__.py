"""The punktfunk/2 client: dial, pair, receive, reassemble, probe."""

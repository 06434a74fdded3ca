"""The leaderboard app's package: data shaping, figures, loaders and one module per page."""

"""What a run measures besides LoadGen: stage times, profiles, energy, cost, time to first image."""

"""What every ChatPic service shares: settings base, events, Mongo repositories, errors, metrics."""

"""Mail: editions (who gets what), rendering, signed tokens and the transports."""

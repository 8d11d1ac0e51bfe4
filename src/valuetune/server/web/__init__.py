"""The web platform: survey, results and token, playground, admin (server-rendered)."""

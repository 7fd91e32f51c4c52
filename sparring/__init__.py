"""sparring: language-model agents play declarative games and discussions, and train on the transcripts."""

__version__ = "0.1.0"

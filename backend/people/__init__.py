"""People who use Workdeck: who they are (directory), how a request is known to come from
one of them and what they may do (access)."""

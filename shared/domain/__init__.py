"""What Stockpile does: jobs, refreshes, dispatch, the audit, tracked symbols and prices."""

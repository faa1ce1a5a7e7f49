"""The bottom layer: settings, the database, the tables, logging, dates and symbols."""

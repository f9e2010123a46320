"""The browser portal: collections and documents (`collections`), questions and answers
(`answers`)."""

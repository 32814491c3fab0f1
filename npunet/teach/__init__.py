"""The course's machinery: the lesson helper, the exercises and their checker, the layer gradient
checks, and the course material installed with npunet (lessons/ of the repository)."""

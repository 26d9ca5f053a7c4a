"""Pure translations between OneFlow's internal OpenAI format and other providers' wire formats."""

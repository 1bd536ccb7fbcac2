/dev/fd/3: line 34: genrt: command not found

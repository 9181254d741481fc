print("hearth-demo")
